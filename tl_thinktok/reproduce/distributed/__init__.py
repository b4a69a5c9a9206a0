"""Scale-out of ``reproduce``: Ray worker actors, job-array shards and the work plan.

* :mod:`~.sharding` — balancing work by expected cost (snake-interleaved), ``--shard i/N``;
* :mod:`~.transport` — work functions pickled with the context and models as references;
* :mod:`~.ray_exec` — :class:`RayExecutor` (``--workers N``): actors that load the model once;
* :mod:`~.shards` — :class:`ShardExecutor` (``--shard i/N``) and :func:`merge_runs`;
* :mod:`~.plan` — ``--plan``: items × tokens per experiment and a device-hour estimate.

Every executor plugs into :meth:`tl_thinktok.runs.RunDir.evaluate`, the one path of pending
work; the process that owns the run directory stays its only writer.

Example:
    >>> parse_shard("0/2")
    (0, 2)
"""

from tl_thinktok.reproduce.distributed.plan import WorkLine, WorkPlan, make_plan
from tl_thinktok.reproduce.distributed.ray_exec import (
    INSTALL_HINT,
    RayExecutor,
    RayUnavailableError,
    RayUnreachableError,
)
from tl_thinktok.reproduce.distributed.sharding import (
    ShardSpecError,
    expected_cost,
    interleave,
    parse_shard,
)
from tl_thinktok.reproduce.distributed.shards import (
    MergeConflictError,
    ShardExecutor,
    ShardPending,
    merge_runs,
    shard_dir,
)

__all__ = ["INSTALL_HINT", "MergeConflictError", "RayExecutor", "RayUnavailableError",
           "RayUnreachableError", "ShardExecutor", "ShardPending", "ShardSpecError", "WorkLine",
           "WorkPlan", "expected_cost", "interleave", "make_plan", "merge_runs", "parse_shard",
           "shard_dir"]  # fmt: skip
