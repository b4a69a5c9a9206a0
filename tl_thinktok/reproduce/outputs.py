"""What an experiment leaves in the output folder: data files, figures, its ``Summary``, the README.

Every experiment writes ``<out>/<name>.png``, its data (``.json`` / ``.csv``) and
``<name>.summary.json``; :func:`write_readme` lists them all with their key numbers.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> f = save_json(out, "demo", {"acc": 0.5})
    >>> s = Summary("demo", "a demo", "organism", "organism", {"acc": 0.5}, files=[f])
    >>> _ = s.save(out)
    >>> check_outputs(out, ["demo"])
    []
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from tl_thinktok._io import JsonIO, atomic_write_text, to_jsonable
from tl_thinktok.reproduce.registry import EXPERIMENTS
from tl_thinktok.runs import finite

__all__ = ["Summary", "check_outputs", "count_key", "mean_ci", "nanmean_n", "save_csv", "save_fig",
           "save_json", "write_readme"]  # fmt: skip


@dataclass
class Summary(JsonIO):
    """What one experiment produced, for ``README.md``.

    Attributes:
        name: experiment name (``fig2`` ...).
        title: one-line title.
        model: model(s) the numbers come from.
        dataset: dataset(s).
        numbers: key numbers (flat dict).
        paper: the paper's numbers / claims for comparison.
        notes: caveats.
        files: produced files (relative to ``out``).
        seconds: wall time.
    """

    name: str
    title: str
    model: str
    dataset: str
    numbers: dict[str, Any]
    paper: str = ""
    notes: str = ""
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def path(self, out: str | Path) -> Path:
        """``<out>/<name>.summary.json``."""
        return Path(out) / f"{self.name}.summary.json"

    def save(self, out: str | Path) -> Path:  # type: ignore[override]
        """Write ``<out>/<name>.summary.json`` (``out`` is the output folder); returns its path."""
        return super().save(self.path(out))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def save_json(out: Path, name: str, data: Any) -> str:
    """Write ``<out>/<name>.json`` and return the file name.

    NaN (an undefined statistic) is written as ``null`` (the :mod:`tl_thinktok._io` convention);
    infinities are refused.
    """
    text = json.dumps(to_jsonable(data), indent=1, default=_json_default, allow_nan=False)
    atomic_write_text(Path(out) / f"{name}.json", text)
    return f"{name}.json"


def save_csv(out: Path, name: str, rows: list[dict[str, Any]]) -> str:
    """Write ``<out>/<name>.csv`` from a list of flat dicts and return the file name.

    An undefined value (NaN or ``None``) is an empty cell.
    """
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows([{k: ("" if _undefined(v) else v) for k, v in r.items()} for r in rows])
    atomic_write_text(Path(out) / f"{name}.csv", buf.getvalue())
    return f"{name}.csv"


def save_fig(out: Path, name: str, fig: Any) -> str:
    """Save a matplotlib figure as ``<out>/<name>.png`` (closes it) and return the file name."""
    import matplotlib.pyplot as plt

    Path(out).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(out) / f"{name}.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f"{name}.png"


def _undefined(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def count_key(key: str) -> str:
    """Key of the count that goes with key number ``key`` (how many traces its mean covers).

    A key number may be NaN (``null`` in JSON) only when its count is 0: undefined is then the
    truth (e.g. the mean AOM of traces of which none has a peak); :func:`check_outputs` flags any
    other NaN.

    Example:
        >>> count_key("base: AOM")
        'base: AOM [n]'
    """
    return f"{key} [n]"


def nanmean_n(values: Sequence[float | None]) -> tuple[float, int]:
    """Mean of the defined values (``None``/NaN skipped) and how many there were; NaN if none.

    Example:
        >>> nanmean_n([1.0, None, float("nan"), 3.0])
        (2.0, 2)
        >>> nanmean_n([None])
        (nan, 0)
    """
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=np.float64)
    ok = v[~np.isnan(v)]
    return (float(ok.mean()) if ok.size else math.nan), int(ok.size)


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and normal-approximation 95% half-width (0 for fewer than 2 values)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), 0.0
    if v.size < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(1.96 * v.std(ddof=1) / math.sqrt(v.size))


def write_readme(out: Path, ctx: Any = None) -> Path:
    """(Re)generate ``<out>/README.md`` from every ``*.summary.json`` in ``out``.

    The README is built from the files; its TransformerLens / host / transformers / torch line
    describes ``ctx``'s run (its host, the installed versions), else the run of ``timings.json``
    (left out when neither is known).
    """
    out = Path(out)
    sums = []
    for name in EXPERIMENTS:
        p = out / f"{name}.summary.json"
        if p.exists():
            sums.append(Summary.load(p))
    tf = out / "timings.json"
    t = json.loads(tf.read_text()) if tf.exists() else {}
    model = getattr(ctx, "model", None) or t.get("model")
    base = getattr(ctx, "base_model", None) if ctx is not None else t.get("base_model", "")
    flags = "" if model in (None, "organism") else (
        f" --model {model}" + (" --base-model none" if base is None else f" --base-model {base}")
    )  # fmt: skip
    lines = [
        "# Figures and tables (generated by `python -m tl_thinktok reproduce`)",
        "",
        f"Do not edit: regenerate with `python -m tl_thinktok reproduce{flags} --out "
        f"{out.name if out.is_absolute() else out.as_posix()}/`.",
        "",
    ]
    runtime = t.get("runtime")
    if getattr(ctx, "host", None):  # the run writing this README
        from tl_thinktok.hosts.versions import runtime_line

        runtime = runtime_line(ctx.host)
    if runtime:
        lines += [f"Made with {runtime.removeprefix('tl-thinktok: ')}.", ""]
    if t:
        lines += [
            f"Last `reproduce` run: model `{t.get('model')}`, mode `{t.get('mode')}`, "
            f"{t.get('total_s', 0):.0f} s in total on {t.get('device', 'cpu')} "
            f"({t.get('threads', '?')} torch thread(s)); sizes: "
            f"`{json.dumps(t.get('sizes', {}))}`.",
            "",
        ]
    if any("organism" in s.model for s in sums):
        lines += [
            "**Figures made on the model organism are about the organism**, a tiny Qwen2 "
            "trained here on synthetic arithmetic word problems whose traces think aloud "
            "(`tl_thinktok.organism`), and its base twin trained on terse solutions. They "
            "show the pipeline working end to end on a model where the thinking words have a "
            "known function; they are NOT measurements of DeepSeek-R1 or any real model. "
            "Paper numbers are listed for comparison only.",
            "",
        ]
    for s in sums:
        lines.append(f"## {s.name}: {s.title}")
        lines.append("")
        lines.append(f"- model: {s.model}; data: {s.dataset}; time: {s.seconds:.1f} s")
        for f in s.files:
            if f.endswith(".png"):
                lines.append(f"\n![{s.name}]({f})\n")
        data = [f for f in s.files if not f.endswith(".png")]
        if data:
            lines.append(f"- data: {', '.join(f'`{f}`' for f in data)}")
        if s.numbers:
            lines.append("- key numbers:")
            for k, v in s.numbers.items():
                lines.append(f"  - {k}: {_fmt(v)}")
        if s.paper:
            lines.append(f"- paper: {s.paper}")
        if s.notes:
            lines.append(f"- notes: {s.notes}")
        lines.append("")
    return atomic_write_text(out / "README.md", "\n".join(lines))


def _fmt(v: Any) -> str:
    if _undefined(v):
        return "undefined (NaN)"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _unexplained_nan(numbers: dict[str, Any]) -> list[str]:
    """Key numbers saved as ``null`` (NaN) without a count of 0 saying that they are undefined."""
    return [k for k, v in numbers.items() if _undefined(v) and numbers.get(count_key(k)) != 0]


def check_outputs(out: Path, names: Sequence[str]) -> list[str]:
    """Problems with the outputs of ``names`` (missing files, non-finite numbers); [] if fine."""
    problems = []
    for n in names:
        p = out / f"{n}.summary.json"
        if not p.exists():
            problems.append(f"{n}: no summary")
            continue
        s = Summary.load(p)
        for f in s.files:
            fp = out / f
            if not fp.exists() or fp.stat().st_size == 0:
                problems.append(f"{n}: missing {f}")
            elif f.endswith(".json") and not finite(json.loads(fp.read_text())):
                problems.append(f"{n}: non-finite numbers in {f}")
        bad = _unexplained_nan(s.numbers)
        if not finite(s.numbers) or bad:
            what = f" (NaN without a zero count: {', '.join(bad)})" if bad else ""
            problems.append(f"{n}: non-finite key numbers{what}")
    return problems
