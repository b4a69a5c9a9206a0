"""Job arrays without Ray: compute one shard of every work list, then merge the run directories.

``tl-thinktok reproduce --shard i/N`` evaluates only the items that :func:`interleave` deals to
shard ``i`` (the same deal in every shard, so the shards are disjoint and cover everything) and
writes them to ``<run-dir>/shard-i-of-N``; an experiment whose work is not complete in this
shard stops with :class:`ShardPending`. :func:`merge_runs` then unions the shards' run
directories into ``<run-dir>`` (same configuration required; a key computed twice must agree), and
a plain ``reproduce`` with the same options renders every figure from the merged cache without
recomputing anything.

Example:
    >>> ex = ShardExecutor(0, 2)                                           # doctest: +SKIP
    >>> merge_runs(["runs/shard-0-of-2", "runs/shard-1-of-2"], "runs")     # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_thinktok.reproduce.distributed.sharding import costs_of, interleave
from tl_thinktok.runs import CONFIG_FILE, RESULTS_FILE, Pending, RunDir, check_batch

__all__ = ["MergeConflictError", "MergeReport", "ShardExecutor", "ShardPending", "merge_runs",
           "shard_dir"]  # fmt: skip


class ShardPending(RuntimeError):
    """This shard finished its part of a work list; other shards hold the rest."""


class MergeConflictError(ValueError):
    """Two shards stored different results (or side files) for the same key."""


def shard_dir(run_dir: str | Path, i: int, n: int) -> Path:
    """Run root of shard ``i`` of ``n`` under ``run_dir``."""
    return Path(run_dir) / f"shard-{i}-of-{n}"


@dataclass
class ShardExecutor:
    """Evaluates (serially, here) only the pending items dealt to shard ``index`` of ``count``.

    Attributes:
        index: this shard (0-based).
        count: number of shards.
        verbose: print one line per work list to stderr.
    """

    index: int
    count: int
    verbose: bool = True
    computed: int = field(default=0, init=False)

    def mine(self, all_items: list[Pending], cost: Callable[[Any], float] | None) -> set[str]:
        """Keys of ``all_items`` dealt to this shard."""
        deal = interleave(costs_of([it for _, it in all_items], cost), self.count)
        return {k for (k, _), s in zip(all_items, deal, strict=True) if s == self.index}

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
        """Evaluate this shard's pending items in ``batch_size`` batches (input order)."""
        keep = self.mine(all_items, cost)
        mine = [(k, it) for k, it in todo if k in keep]
        if self.verbose:
            print(
                f"[shard {self.index}/{self.count}] {desc}: {len(mine)} of {len(todo)} pending "
                f"items are this shard's",
                file=sys.stderr,
                flush=True,
            )
        for s in range(0, len(mine), batch_size):
            chunk = mine[s : s + batch_size]
            for (k, _), r in zip(chunk, check_batch(fn([it for _, it in chunk]), len(chunk)),
                                 strict=True):  # fmt: skip
                store(k, r)
                self.computed += 1

    def finish(self, run: RunDir, keys: list[str]) -> None:
        """Raise :class:`ShardPending` unless every key is done (so the caller stops here)."""
        missing = [k for k in keys if k not in run.results]
        if missing:
            raise ShardPending(
                f"{run.path.name}: {len(keys) - len(missing)} of {len(keys)} items done here; "
                f"{len(missing)} belong to other shards (merge with --merge, then rerun)"
            )


@dataclass
class MergeReport:
    """What :func:`merge_runs` did.

    Attributes:
        runs: merged run directories (relative paths).
        added: results appended to the destination.
        already: results the destination already held (identical).
        files: side files copied.
    """

    runs: list[str] = field(default_factory=list)
    added: int = 0
    already: int = 0
    files: int = 0


def _run_dirs(root: Path, dest: Path) -> list[Path]:
    """Run directories under ``root``, leaving out ``dest``'s when ``dest`` lies inside it."""
    root, dest = root.resolve(), dest.resolve()
    skip = dest if root in dest.parents else None
    out = []
    for p in root.rglob(CONFIG_FILE):
        d = p.parent.resolve()
        if skip is None or (d != skip and skip not in d.parents):
            out.append(p.parent)
    return sorted(out)


def merge_runs(sources: Sequence[str | Path], dest: str | Path) -> MergeReport:
    """Union the run directories under each source root into ``dest`` (the only writer).

    Every run directory ``<source>/<model>/<label>-<hash>`` is opened (or created) at the same
    relative path under ``dest`` with the same configuration; its side files are copied first,
    then its missing results appended (fsync'd), so an interrupted merge resumes cleanly.

    Raises:
        FileNotFoundError: a source does not exist or holds no run directory.
        ConfigMismatchError: ``dest`` holds a run with a different configuration at that path.
        MergeConflictError: a key or side file with different contents in two places.
    """
    dest = Path(dest)
    report = MergeReport()
    for src in map(Path, sources):
        if not src.is_dir():
            raise FileNotFoundError(f"merge source {src} is not a directory")
        if src.resolve() == dest.resolve():
            raise ValueError(f"merge source {src} is the destination itself")
        runs = _run_dirs(src, dest)
        if not runs:
            raise FileNotFoundError(f"merge source {src} holds no run directory ({CONFIG_FILE})")
        for path in runs:
            rel = path.relative_to(src)
            config = json.loads((path / CONFIG_FILE).read_text())["config"]
            source = RunDir.open(path, config)
            target = RunDir.open(dest / rel, config)
            for f in sorted(path.rglob("*")):
                if not f.is_file() or f.name in (CONFIG_FILE, RESULTS_FILE) or f.name[0] == ".":
                    continue
                out = target.path / f.relative_to(path)
                if out.exists():
                    if out.read_bytes() != f.read_bytes():
                        raise MergeConflictError(f"side file {out} differs from {f}")
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_name(f".{out.name}.tmp")
                shutil.copyfile(f, tmp)
                tmp.replace(out)
                report.files += 1
            for key, result in source.results.items():
                if key in target.results:
                    if target.results[key] != result:
                        raise MergeConflictError(
                            f"key {key!r} of {rel}: {src} holds a different result than {dest}"
                        )
                    report.already += 1
                    continue
                target.append(key, result)
                report.added += 1
            report.runs.append(str(rel))
    return report
