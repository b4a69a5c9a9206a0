"""Ray: worker actors that load the model once and evaluate batches of pending items.

:class:`RayExecutor` is the executor of a run directory (:meth:`tl_thinktok.runs.RunDir.evaluate`)
when ``reproduce --workers N`` is given. Each of the ``N`` actors (:class:`ModelWorker`) builds
its own :class:`~tl_thinktok.reproduce.context.ExpContext` from the driver's settings and loads
each model once; the driver ships each work function once per work list (models and context as
references, :mod:`~tl_thinktok.reproduce.distributed.transport`) and then batches of items,
longest expected batches first, at most ``depth`` batches in flight per actor. Results (and side
files such as residuals, as safetensors bytes) come back to the driver, which alone writes the run
directory, so kill/resume semantics are those of a serial run. A dead actor's batches go back to
the queue and a fresh actor takes its place.

Example:
    >>> with RayExecutor(ctx, workers=2) as ex:                            # doctest: +SKIP
    ...     ctx.executor = ex
    ...     run_one(ctx, "fig5")
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tl_thinktok.reproduce.distributed.sharding import costs_of
from tl_thinktok.reproduce.distributed.transport import dumps, loads
from tl_thinktok.runs import Pending, RunDir, check_batch

__all__ = ["INSTALL_HINT", "ModelWorker", "RayExecutor", "RayUnavailableError",
           "RayUnreachableError", "check_address", "require_ray", "worker_settings"]  # fmt: skip

#: How to get Ray.
INSTALL_HINT = 'pip install "tl-thinktok[distributed]"'

#: Context settings a worker never inherits (it evaluates in-process, quietly).
_DRIVER_ONLY = ("workers", "ray_address", "gpus_per_worker", "shard")


class RayUnavailableError(ImportError):
    """``--workers`` without Ray installed (the message says how to install it)."""


class RayUnreachableError(ConnectionError):
    """``--ray-address`` names no reachable Ray cluster."""


def require_ray() -> Any:
    """The ``ray`` module.

    Raises:
        RayUnavailableError: Ray is not installed.
    """
    try:
        import ray
    except ImportError as e:
        raise RayUnavailableError(
            f"--workers needs Ray, which is not installed; install it with: {INSTALL_HINT}"
        ) from e
    return ray


#: HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS or Ray Client
#: server) answers with a SETTINGS frame of its own.
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def check_address(address: str | None, timeout: float = 3.0, connect_timeout: float = 10.0) -> None:
    """Fail fast unless a gRPC server (a Ray cluster) answers at ``address``.

    ``address`` is ``HOST:PORT`` or ``ray://HOST:PORT``; ``None``, ``"auto"`` and ``"local"``
    are left to Ray. The check connects and exchanges an HTTP/2 greeting, so a closed port, a
    silent host and a port that accepts but is no Ray cluster fail within ``2 * timeout``
    seconds; then a child process connects with ``ray.init`` and must finish within
    ``connect_timeout`` seconds (``ray.init`` itself retries for minutes).

    Raises:
        RayUnreachableError: malformed, unreachable, or not answering like a Ray cluster.
    """
    if address in (None, "", "auto", "local"):
        return
    hostport = str(address).split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnreachableError(
            f"--ray-address {address!r}: expected HOST:PORT or ray://HOST:PORT"
        )
    hint = "start one there with `ray start --head`, or leave out --ray-address for a local one"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(_H2_HELLO)
            reply = s.recv(9)
    except OSError as e:
        raise RayUnreachableError(
            f"cannot reach the Ray cluster at {address} within {timeout:g} s ({e}); {hint}"
        ) from e
    if len(reply) < 9 or reply[3] != 0x04:
        raise RayUnreachableError(
            f"cannot reach the Ray cluster at {address}: something listens there but does not "
            f"answer like a Ray (gRPC) server; {hint}"
        )
    # a gRPC answer may still come from a proxy: connect for real, in a child with a deadline
    import subprocess

    probe = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); ray.shutdown()"
    try:
        r = subprocess.run([sys.executable, "-c", probe, str(address)], capture_output=True,
                           text=True, timeout=connect_timeout)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise RayUnreachableError(
            f"cannot reach the Ray cluster at {address}: no Ray cluster answered within "
            f"{connect_timeout:g} s; {hint}"
        ) from e
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise RayUnreachableError(f"cannot connect to the Ray cluster at {address}: {last}")


def worker_settings(ctx: Any) -> dict[str, Any]:
    """Keyword arguments of a worker's ``ExpContext``: the driver's, run in-process, quietly."""
    cfg = {k: v for k, v in ctx.config().items() if k not in _DRIVER_ONLY}
    cfg["progress"] = False
    return cfg


class ModelWorker:
    """Body of a Ray actor: one context, each model loaded once, batches of items evaluated.

    Args:
        settings: :func:`worker_settings` of the driver's context.
        threads: torch CPU threads.
        preload: models to load at start (so a broken model fails at start, not mid-run).
    """

    def __init__(self, settings: dict[str, Any], threads: int, preload: list[str]) -> None:
        import torch

        from tl_thinktok.reproduce.context import ExpContext

        torch.set_num_threads(max(1, int(threads)))
        if not settings.get("progress", False):  # no "Loading weights" bars from every worker
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        self.ctx = ExpContext(**settings)
        self._fns: dict[str, Any] = {}
        for name in preload:
            self.ctx.load(name)

    def pid(self) -> int:
        """Process id of this worker (tests kill it)."""
        return os.getpid()

    def run(
        self, fn_key: str, fn_blob: bytes, items_blob: bytes, experiment: str | None
    ) -> list[Any]:
        """Evaluate one batch: ``fn(items)``, one result per item."""
        if fn_key not in self._fns:
            self._fns = {fn_key: loads(fn_blob, self.ctx)}  # one work list at a time
        self.ctx.experiment = experiment
        items = loads(items_blob, self.ctx)
        return check_batch(self._fns[fn_key](items), len(items))


@dataclass
class RayExecutor:
    """Evaluates pending items on ``workers`` Ray actors; the driver stores every result.

    Attributes:
        ctx: the driver's context (its settings and work functions are shipped).
        workers: number of actors (at least 1).
        address: an existing cluster (``HOST:PORT``, ``ray://HOST:PORT``, ``"auto"``); ``None``
            starts a local one with ``workers * cpus_per_worker`` CPUs.
        gpus_per_worker: GPUs reserved per actor (Ray sets ``CUDA_VISIBLE_DEVICES``).
        cpus_per_worker: CPUs reserved per actor.
        threads: torch CPU threads per actor.
        depth: batches in flight per actor.
        max_restarts: fresh actors started after deaths (``None`` = ``2 * workers``).
        verbose: one line per work list on stderr.
        on_result: called as ``on_result(executor, key)`` after each stored result (tests).
    """

    ctx: Any
    workers: int
    address: str | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    threads: int = 1
    depth: int = 2
    max_restarts: int | None = None
    verbose: bool = True
    on_result: Callable[[RayExecutor, str], None] | None = None
    actors: list[Any] = field(default_factory=list, init=False)
    stats: dict[str, int] = field(default_factory=dict, init=False)
    _ray: Any = field(default=None, init=False, repr=False)
    _own_cluster: bool = field(default=False, init=False, repr=False)
    _actor_cls: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from tl_thinktok._validate import check_float, check_int

        self.workers = check_int("workers", self.workers, low=1)
        self.depth = check_int("depth", self.depth, low=1)
        self.gpus_per_worker = check_float("gpus_per_worker", self.gpus_per_worker, low=0.0)
        self.cpus_per_worker = check_float("cpus_per_worker", self.cpus_per_worker, low=0.0)
        if self.max_restarts is None:
            self.max_restarts = 2 * self.workers
        self.stats = {"items": 0, "batches": 0, "actor_deaths": 0, "resubmitted": 0}

    # ------------------------------------------------------------------------ lifecycle

    def start(self) -> RayExecutor:
        """Connect to (or start) the cluster and start the actors, each loading the model.

        Raises:
            RayUnavailableError: Ray is not installed.
            RayUnreachableError: ``address`` answers nothing.
            RuntimeError: the cluster lacks the CPUs / GPUs for ``workers`` actors.
        """
        if self.actors:
            return self
        ray = self._ray = require_ray()
        check_address(self.address)
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR"}
            if self.address is None:
                need = self.workers * self.cpus_per_worker
                kw["num_cpus"] = max(1, int(need + 0.999))
            ray.init(address=self.address, **kw)
            self._own_cluster = True
        have = ray.cluster_resources()
        for res, per in (("CPU", self.cpus_per_worker), ("GPU", self.gpus_per_worker)):
            if per and have.get(res, 0) < per * self.workers:
                self.close()
                raise RuntimeError(
                    f"the Ray cluster has {have.get(res, 0):g} {res}s; {self.workers} workers "
                    f"need {per * self.workers:g}"
                )
        self._actor_cls = ray.remote(
            num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker, max_restarts=0
        )(ModelWorker)
        self.actors = [self._new_actor() for _ in range(self.workers)]
        try:
            ray.get([a.pid.remote() for a in self.actors])
        except Exception:
            self.close()
            raise
        return self

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(worker_settings(self.ctx), self.threads, [self.ctx.model])

    def close(self) -> None:
        """Kill the actors; shut the cluster down if this executor started it."""
        ray = self._ray
        if ray is None:
            return
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # already dead
                pass
        self.actors = []
        if self._own_cluster and ray.is_initialized():
            ray.shutdown()
        self._own_cluster = False

    def __enter__(self) -> RayExecutor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ evaluation

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
        """Evaluate ``todo`` on the actors in ``batch_size`` batches; ``store`` each result here.

        Batches are those of a serial run (consecutive pending items), dispatched longest
        expected first to whichever actor has room.

        Raises:
            Exception: the work function's own error (re-raised with its type).
            RuntimeError: every actor died and no restart is left.
        """
        from tl_thinktok._progress import progress_bar

        ray = self.start()._ray
        batches = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
        weight = [sum(costs_of([it for _, it in b], cost)) for b in batches]
        queue = deque(sorted(range(len(batches)), key=lambda b: (-weight[b], b)))
        if self.verbose:
            print(
                f"[workers] {desc}: {len(todo)} pending of {len(all_items)} items, "
                f"{len(batches)} batches on {len(self.actors)} workers",
                file=sys.stderr,
                flush=True,
            )
        fn_key = uuid.uuid4().hex
        fn_ref = ray.put(dumps(fn, self.ctx))
        experiment = getattr(self.ctx, "experiment", None)
        inflight: dict[Any, tuple[int, int]] = {}  # ref -> (actor slot, batch)
        bar = progress_bar(total=len(all_items), initial=len(all_items) - len(todo), desc=desc,
                           disable=not progress, leave=False)  # fmt: skip
        try:
            while queue or inflight:
                for slot, actor in enumerate(self.actors):
                    busy = sum(1 for s, _ in inflight.values() if s == slot)
                    while busy < self.depth and queue:
                        b = queue.popleft()
                        blob = dumps([it for _, it in batches[b]], self.ctx)
                        ref = actor.run.remote(fn_key, fn_ref, blob, experiment)
                        inflight[ref] = (slot, b)
                        busy += 1
                (ref,), _ = ray.wait(list(inflight), num_returns=1)
                slot, b = inflight.pop(ref)
                try:
                    results = ray.get(ref)
                except ray.exceptions.RayActorError:
                    self._replace(slot, inflight, queue, b)
                    continue
                except ray.exceptions.RayTaskError as e:
                    raise e.as_instanceof_cause() from None
                self.stats["batches"] += 1
                for (k, _), r in zip(batches[b], results, strict=True):
                    store(k, r)
                    self.stats["items"] += 1
                    bar.update(1)
                    if self.on_result is not None:
                        self.on_result(self, k)
        finally:
            bar.close()
            for ref in inflight:  # an error above: stop what is left
                try:
                    ray.cancel(ref, force=False)
                except Exception:
                    pass

    def _replace(
        self, slot: int, inflight: dict[Any, tuple[int, int]], queue: deque[int], failed: int
    ) -> None:
        """A dead actor: its batches go back to the front of the queue; a fresh actor starts."""
        lost = [failed] + [b for r, (s, b) in list(inflight.items()) if s == slot]
        for r in [r for r, (s, _) in inflight.items() if s == slot]:
            del inflight[r]
        self.stats["actor_deaths"] += 1
        self.stats["resubmitted"] += len(lost)
        queue.extendleft(sorted(lost, reverse=True))
        if self.verbose:
            print(
                f"[workers] worker {slot} died; {len(lost)} batches go to other workers",
                file=sys.stderr,
                flush=True,
            )
        assert self.max_restarts is not None
        if self.stats["actor_deaths"] > self.max_restarts:
            raise RuntimeError(
                f"{self.stats['actor_deaths']} Ray workers died (max_restarts="
                f"{self.max_restarts}); giving up"
            )
        self.actors[slot] = self._new_actor()
