"""Resumable, lossless run directories: ``config.json`` + append-only ``results.jsonl``.

A run directory holds the full configuration (with seeds and library versions) and one JSON line
per finished item, appended with flush + fsync as soon as the item finishes. Reopening the same
directory with the same configuration skips finished items; a truncated last line (a process
killed mid-write) is repaired on open; a different configuration is refused with a clear error.

Pending items go through one path, :meth:`RunDir.evaluate` (used by :meth:`RunDir.map` and
:meth:`RunDir.map_batched`): serially in this process by default, or by the run's ``executor``
(Ray actors or one shard of a job array, :mod:`tl_thinktok.reproduce.distributed`). Either way
this process stays the only writer of the directory: a result may carry side files as bytes
(:class:`WithFiles`), written (atomically) before its line is appended.

Example:
    >>> from tl_thinktok.runs import RunDir
    >>> run = RunDir.open("runs/demo", {"model": "organism", "n": 3, "seed": 0})
    >>> results = run.map(range(3), key=str, fn=lambda i: {"square": i * i}, desc="demo")
    >>> [r["square"] for r in results]
    [0, 1, 4]
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tl_thinktok._io import atomic_write_text
from tl_thinktok._validate import check_int

T = TypeVar("T")

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.jsonl"


class ConfigMismatchError(ValueError):
    """A run directory already holds a run with a different configuration."""


@dataclass
class WithFiles:
    """A result plus side files (run-directory-relative name → bytes) to write before it.

    Example:
        >>> WithFiles({"n": 1}, {"resid/a.safetensors": b"..."}).result
        {'n': 1}
    """

    result: Any
    files: dict[str, bytes] = field(default_factory=dict)


#: One pending work item: (key, item).
Pending = tuple[str, Any]


class Executor(Protocol):
    """Evaluates the pending items of a run (see :meth:`RunDir.evaluate`)."""

    def evaluate(
        self,
        run: RunDir,
        todo: list[Pending],
        fn: Callable[[list[Any]], list[Any]],
        batch_size: int,
        all_items: list[Pending],
        cost: Callable[[Any], float] | None,
        store: Callable[[str, Any], None],
        desc: str,
        progress: bool,
    ) -> None:
        """Call ``store(key, result)`` (in this process) for every item of ``todo``."""
        ...


def _canonical(obj: Any) -> Any:
    """JSON round-trip (tuples → lists, keys → str) so stored and new configs compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True))


def config_hash(config: dict[str, Any], length: int = 10) -> str:
    """Short stable hash of a configuration (for naming run directories).

    Example:
        >>> config_hash({"a": 1}) == config_hash({"a": 1})
        True
    """
    blob = json.dumps(_canonical(config), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def library_versions() -> dict[str, str]:
    """Versions of Python and the main libraries (recorded in ``config.json``; no imports)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformer-lens", "transformers", "numpy", "tl-thinktok"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unavailable"
    return out


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [
        f"{k}: {a.get(k, '<missing>')!r} != {b.get(k, '<missing>')!r}"
        for k in keys
        if a.get(k, "<missing>") != b.get(k, "<missing>")
    ]


@dataclass
class RunDir:
    """A resumable run directory.

    Attributes:
        path: the directory.
        config: the run's configuration (JSON-serialisable; include every seed).
        results: finished results by key, in completion order.
        executor: evaluates pending items (``None`` = serially in this process).
    """

    path: Path
    config: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)
    executor: Executor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def open(cls, path: str | Path, config: dict[str, Any]) -> RunDir:
        """Create or reopen a run directory.

        Args:
            path: directory (created if absent).
            config: JSON-serialisable configuration.

        Returns:
            The run, with the results already present loaded.

        Raises:
            ConfigMismatchError: the directory holds a run with a different configuration.
            ValueError: ``config`` is not JSON-serialisable, or a results line other than the
                last is corrupt (names the file and line).
        """
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        try:
            config = _canonical(config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"config is not JSON-serialisable: {e}") from e
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg_file = path / CONFIG_FILE
        if cfg_file.exists():
            stored = json.loads(cfg_file.read_text())
            old = stored.get("config", {})
            if old != config:
                raise ConfigMismatchError(
                    f"run directory {path} holds a run with a different config "
                    f"({'; '.join(_diff(old, config))}); use another run directory or delete it"
                )
            if stored.get("versions") != library_versions():
                warnings.warn(
                    f"resuming {path} with different library versions: "
                    f"{stored.get('versions')} -> {library_versions()}",
                    stacklevel=2,
                )
        else:
            payload = {"config": config, "versions": library_versions()}
            atomic_write_text(cfg_file, json.dumps(payload, indent=2, sort_keys=True))
        run = cls(path=path, config=config)
        run.results = run._load_results()
        return run

    @property
    def results_file(self) -> Path:
        """Path of ``results.jsonl``."""
        return self.path / RESULTS_FILE

    def _load_results(self) -> dict[str, Any]:
        file = self.results_file
        if not file.exists():
            return {}
        data = file.read_bytes()
        lines = data.split(b"\n")
        out: dict[str, Any] = {}
        good_end = 0
        offset = 0
        for i, raw in enumerate(lines):
            is_last = i == len(lines) - 1
            end = offset + len(raw) + (0 if is_last else 1)
            if raw.strip():
                try:
                    if is_last:  # no trailing newline: an interrupted write
                        raise ValueError("line not terminated")
                    rec = json.loads(raw)
                    key, result = rec["key"], rec["result"]
                except (ValueError, KeyError, TypeError) as e:
                    tail = lines[i + 1 :]
                    if any(t.strip() for t in tail):
                        raise ValueError(f"corrupt record in {file} line {i + 1}: {e}") from e
                    warnings.warn(
                        f"{file}: dropping truncated last line {i + 1} (interrupted write)",
                        stacklevel=3,
                    )
                    with file.open("r+b") as f:
                        f.truncate(good_end)
                        f.flush()
                        os.fsync(f.fileno())
                    break
                out[key] = result
            good_end = end
            offset = end
        return out

    def done(self, key: str) -> bool:
        """Whether the item ``key`` has a stored result."""
        return key in self.results

    def append(self, key: str, result: Any) -> None:
        """Store one finished item's result durably (write, flush, fsync).

        Raises:
            ValueError: ``key`` already stored, or ``result`` not JSON-serialisable.
        """
        if not isinstance(key, str):
            raise TypeError(f"key must be str, got {type(key).__name__}")
        if key in self.results:
            raise ValueError(f"result for key {key!r} already stored in {self.results_file}")
        try:
            line = json.dumps({"key": key, "result": result}, allow_nan=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"result for key {key!r} is not JSON-serialisable: {e}") from e
        with self.results_file.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.results[key] = json.loads(line)["result"]

    def store(self, key: str, result: Any) -> None:
        """Write a result's side files (if a :class:`WithFiles`), then append the result."""
        if isinstance(result, WithFiles):
            for name, data in result.files.items():
                target = self.artifact(name)
                if not target.resolve().is_relative_to(self.path.resolve()):
                    raise ValueError(f"side file {name!r} lies outside the run directory")
                tmp = target.with_name(f".{target.name}.tmp")
                with tmp.open("wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                tmp.replace(target)
            result = result.result
        self.append(key, result)

    def evaluate(
        self,
        items: Iterable[T],
        key: Callable[[T], str],
        fn: Callable[[list[T]], list[Any]],
        batch_size: int,
        desc: str | None = None,
        progress: bool = True,
        cost: Callable[[T], float] | None = None,
    ) -> list[Any]:
        """Evaluate the unfinished items in batches; return all results in ``items`` order.

        The one path of pending work: serially here, in order, ``batch_size`` items per call, or
        by ``self.executor`` (which may evaluate elsewhere, but results are stored here).

        Args:
            items: the work list.
            key: item → unique string key.
            fn: batch of items → one JSON-serialisable result (or :class:`WithFiles`) per item.
            batch_size: items per ``fn`` call.
            desc: progress bar label.
            progress: show a tqdm progress bar.
            cost: item → expected cost (e.g. tokens), for balancing work across workers.

        Raises:
            ValueError: duplicate keys, or ``fn`` returned the wrong number of results.
        """
        batch_size = check_int("batch_size", batch_size, low=1)
        items = list(items)
        keys = [key(it) for it in items]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate item keys in run {self.path}")
        todo = [(k, it) for k, it in zip(keys, items, strict=True) if k not in self.results]
        if todo and self.executor is not None:
            self.executor.evaluate(
                self,
                todo,
                fn,
                batch_size,
                all_items=list(zip(keys, items, strict=True)),
                cost=cost,
                store=self.store,
                desc=desc or self.path.name,
                progress=progress,
            )
            if hasattr(self.executor, "finish"):
                self.executor.finish(self, keys)
        elif todo:
            from tl_thinktok._progress import progress_bar

            bar = progress_bar(
                total=len(items),
                initial=len(items) - len(todo),
                desc=desc or self.path.name,
                disable=not progress,
                leave=False,
            )
            for s in range(0, len(todo), batch_size):
                chunk = todo[s : s + batch_size]
                results = check_batch(fn([it for _, it in chunk]), len(chunk))
                for (k, _), r in zip(chunk, results, strict=True):
                    self.store(k, r)
                bar.update(len(chunk))
            bar.close()
        return [self.results[k] for k in keys]

    def map(
        self,
        items: Iterable[T],
        key: Callable[[T], str],
        fn: Callable[[T], Any],
        desc: str | None = None,
        progress: bool = True,
        cost: Callable[[T], float] | None = None,
    ) -> list[Any]:
        """Run ``fn`` on every item not yet finished; return all results in ``items`` order.

        Args:
            items: the work list.
            key: item → unique string key.
            fn: item → JSON-serialisable result (appended as soon as it returns).
            desc: progress bar label.
            progress: show a tqdm progress bar.
            cost: item → expected cost, for balancing work across workers.

        Example:
            >>> run.map([1, 2], key=str, fn=lambda i: i + 1)  # doctest: +SKIP
        """
        return self.evaluate(
            items, key, _PerItem(fn), batch_size=1, desc=desc, progress=progress, cost=cost
        )

    def map_batched(
        self,
        items: Iterable[T],
        key: Callable[[T], str],
        fn: Callable[[list[T]], list[Any]],
        batch_size: int,
        desc: str | None = None,
        progress: bool = True,
        cost: Callable[[T], float] | None = None,
    ) -> list[Any]:
        """Like :meth:`map`, but ``fn`` takes a batch of unfinished items and returns one result
        per item; each is appended as soon as its batch returns.

        Example:
            >>> run.map_batched(range(5), str, lambda b: [i * 2 for i in b], 2)  # doctest: +SKIP
        """
        return self.evaluate(items, key, fn, batch_size, desc=desc, progress=progress, cost=cost)

    def artifact(self, name: str) -> Path:
        """Path for a side file (tensors, plots) inside the run directory (parent created)."""
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


@dataclass(frozen=True)
class _PerItem:
    """A per-item function as a batch function (picklable when ``fn`` is)."""

    fn: Callable[[Any], Any]

    def __call__(self, batch: list[Any]) -> list[Any]:
        return [self.fn(it) for it in batch]


def check_batch(results: Any, n: int) -> list[Any]:
    """``results`` as a list of ``n`` results of a batch function (else a ValueError)."""
    results = list(results)
    if len(results) != n:
        raise ValueError(f"batch function returned {len(results)} results for {n} items")
    return results


def finite(x: Any) -> bool:
    """Whether every number inside a nested JSON-like value is finite (helper for checks).

    Example:
        >>> finite({"a": [1.0, 2]}), finite([float("nan")])
        (True, False)
    """
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return True
    if isinstance(x, (int, float)):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(finite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(finite(v) for v in x)
    return True
