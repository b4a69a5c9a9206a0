"""circuitsvis views of an :class:`~tl_thinktok.trace.MITrace`, rendered offline.

Two views (optional extra ``pip install "tl-thinktok[viz]"``, which installs circuitsvis):

* :func:`mi_tokens` — the generated tokens coloured by ``MI(h_t, h_y)``, peaks marked (a ``▲``
  before the token, and a second colouring "peak" to switch to); circuitsvis's selector switches
  to any other per-step measure given (``measures=``: entropy, lens depth, counterfactual
  importance …, :mod:`tl_thinktok.importance`); hover a token for its values;
* :func:`peak_lens_topk` — the peak tokens coloured by the log-probability the peak-token lens
  gives them; hover one for the lens's top-``k`` at that step.

circuitsvis's own ``render`` first probes the network (``urlopen("http://google.com")``) and, when
online, loads its JavaScript from a CDN. These views never do either: they inline circuitsvis's
bundled ``dist/cdn/iife.js`` once per view, so they render in a notebook, a saved page or a
browser without network access. :class:`OfflineHTML` is what they return (``_repr_html_`` for
Jupyter, ``save(path)`` for a standalone page).

Example:
    >>> from tl_thinktok import viz
    >>> view = viz.mi_tokens(trace, model)                # doctest: +SKIP
    >>> view                                              # doctest: +SKIP  (shows in Jupyter)
    >>> view.save("trace_tokens.html")                    # doctest: +SKIP
    >>> viz.peak_lens_topk(trace, model, k=5)             # doctest: +SKIP
"""

from __future__ import annotations

import functools
import html
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from tl_thinktok._io import atomic_write_text
from tl_thinktok._validate import check_bool, check_int
from tl_thinktok.report.readout import PeakReadout, peak_readout
from tl_thinktok.trace import MITrace

__all__ = ["OfflineHTML", "circuitsvis_js", "mi_tokens", "peak_lens_topk", "render_offline"]

PEAK_MARK = "\u25b2"
"""Marker put before a peak token in :func:`mi_tokens`."""

_INSTALL_HINT = 'circuitsvis is not installed: pip install "tl-thinktok[viz]" (or circuitsvis)'


@functools.lru_cache(maxsize=1)
def circuitsvis_js() -> str:
    """circuitsvis's bundled browser build (``dist/cdn/iife.js``), read from the installed package.

    Raises:
        ImportError: circuitsvis is not installed.
    """
    try:
        import circuitsvis  # noqa: F401
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    js = (resources.files("circuitsvis") / "dist" / "cdn" / "iife.js").read_text(encoding="utf-8")
    # the bundle is inlined in a <script>: a literal closing tag in it would end the script early
    return js.replace("</script>", "<\\/script>")


class OfflineHTML:
    """A rendered view whose JavaScript is inline (no network needed to show it).

    Attributes:
        html: the HTML fragment (a ``div`` and the script that renders into it).
        title: page title used by :meth:`page` / :meth:`save`.
    """

    def __init__(self, fragment: str, title: str = "tl-thinktok view") -> None:
        self.html = fragment
        self.title = title

    def _repr_html_(self) -> str:
        return self.html

    def __html__(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"OfflineHTML({self.title!r}, {len(self.html)} characters)"

    def page(self) -> str:
        """A complete standalone HTML page holding the view."""
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title></head>\n<body>\n{self.html}\n</body></html>\n"
        )

    def save(self, path: str | Path) -> Path:
        """Write :meth:`page` to ``path`` (folders created, atomic)."""
        return atomic_write_text(path, self.page())


def _js_props(props: dict[str, Any]) -> str:
    """Props as a JSON object literal that is safe inside a ``<script>`` element."""
    text = json.dumps({k: v for k, v in props.items() if v is not None}, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_offline(element: str, title: str = "tl-thinktok view", **props: Any) -> OfflineHTML:
    """Render the circuitsvis React component ``element`` with ``props``, JavaScript inline.

    Args:
        element: a circuitsvis component name (``"ColoredTokens"``, ``"TokenLogProbs"``, ...).
        title: page title of the view.
        **props: the component's props (JSON-serialisable: lists, numbers, strings).

    Raises:
        ImportError: circuitsvis is not installed.
        ValueError: ``element`` is not a plain identifier, or a prop is NaN / infinite.
    """
    if not element.isidentifier():
        raise ValueError(f"element must be a circuitsvis component name, got {element!r}")
    js = circuitsvis_js()
    div = f"tl-thinktok-{uuid.uuid4().hex[:12]}"
    fragment = (
        f'<div id="{div}" style="margin: 15px 0;"></div>\n'
        f"<script>\n{js}\n;CircuitsVis.render({json.dumps(div)}, CircuitsVis.{element}, "
        f"{_js_props(props)});\n</script>"
    )
    return OfflineHTML(fragment, title)


def _token_html(s: str) -> str:
    """circuitsvis writes token strings as innerHTML: escape them so they show as text."""
    return html.escape(s, quote=False)


def mi_tokens(
    trace: MITrace,
    tokenizer: Any,
    *,
    mark_peaks: bool = True,
    measures: Mapping[str, Sequence[float]] | None = None,
) -> OfflineHTML:
    """Generated tokens coloured by MI, peaks marked (circuitsvis ``ColoredTokensMulti``).

    Colourings to switch between: ``MI(h_t, h_y)``, ``peak`` (1 at peaks, else 0), ``|h_t|`` and
    each of ``measures``; the hover box of a token lists them all.

    Args:
        trace: the trace.
        tokenizer: an HF tokenizer, or a model that has one.
        mark_peaks: put :data:`PEAK_MARK` before each peak token.
        measures: more per-step colourings, name → ``[step]`` values (NaN shows uncoloured), e.g.
            ``{"entropy": sm.entropy, "lens depth": sm.lens_depth}`` from
            :func:`tl_thinktok.importance.step_measures`.

    Raises:
        ImportError: circuitsvis is not installed.
        ValueError: a measure whose length is not the trace's number of steps.

    Example:
        >>> sm = step_measures(model, [trace])[0]                                 # doctest: +SKIP
        >>> viz.mi_tokens(trace, model, measures={"entropy": sm.entropy})          # doctest: +SKIP
    """
    if not isinstance(trace, MITrace):
        raise TypeError(f"trace must be an MITrace, got {type(trace).__name__}")
    check_bool("mark_peaks", mark_peaks)
    tok = getattr(tokenizer, "tokenizer", None) or tokenizer
    peaks = set(trace.peaks)
    tokens = []
    for t, i in enumerate(trace.gen_ids):
        s = _token_html(tok.decode([i]))
        tokens.append(f"{PEAK_MARK}{s}" if mark_peaks and t in peaks else s)
    mi = [float(v) if v == v else 0.0 for v in trace.mi]  # NaN (undefined) shows uncoloured
    norm = [float(v) if v == v else 0.0 for v in trace.resid_norm]
    values = [[m, float(t in peaks), r] for t, (m, r) in enumerate(zip(mi, norm, strict=True))]
    labels = ["MI(h_t, h_y)", "peak", "|h_t|"]
    for name, col in (measures or {}).items():
        v = [float(x) for x in col]
        if len(v) != trace.n_steps:
            raise ValueError(
                f"measure {name!r} has {len(v)} values, the trace {trace.n_steps} steps"
            )
        if name in labels:
            raise ValueError(f"measure name {name!r} is taken")
        labels.append(str(name))
        for row, x in zip(values, v, strict=True):
            row.append(x if math.isfinite(x) else 0.0)
    return render_offline(
        "ColoredTokensMulti",
        title=f"MI per token ({trace.id or 'trace'})",
        tokens=tokens,
        values=values,
        labels=labels,
    )


def peak_lens_topk(
    trace: MITrace,
    model: Any = None,
    *,
    k: int = 5,
    readout: PeakReadout | None = None,
) -> OfflineHTML:
    """The peak-token lens at the MI peaks (circuitsvis ``TokenLogProbs``).

    Each peak token is coloured by the log-probability the lens gives it; hovering shows the lens's
    top-``k`` at that step and the token's rank.

    Args:
        trace: the trace.
        model: the model that made it (needed unless ``readout`` is given).
        k: top-``k`` tokens per peak.
        readout: a precomputed :func:`~tl_thinktok.report.readout.peak_readout`.

    Raises:
        ImportError: circuitsvis is not installed.
        ValueError: neither ``model`` nor ``readout`` given.
    """
    if readout is None:
        if model is None:
            raise ValueError("give the model (to run the lens) or a precomputed readout")
        readout = peak_readout(trace, model, k=check_int("k", k, low=1))
    if not isinstance(readout, PeakReadout):
        raise TypeError(f"readout must be a PeakReadout, got {type(readout).__name__}")
    if len(readout) == 0:
        return OfflineHTML("<p>This trace has no MI peaks: nothing for the lens to read.</p>")

    labels = [f"[{s}]{_token_html(t)}" for s, t in zip(readout.steps, readout.tokens, strict=True)]
    logp = [[math.log(p) if p > 0 else -1e9 for p in row] for row in readout.topk_probs]
    return render_offline(
        "TokenLogProbs",
        title=f"lens top-{len(logp[0])} at the MI peaks ({trace.id or 'trace'})",
        prompt=["(peaks)", *labels],  # the component skips the first entry (a BOS slot)
        topKLogProbs=logp,
        topKTokens=[[_token_html(t) for t in row] for row in readout.topk_tokens],
        correctTokenRank=readout.rank,
        correctTokenLogProb=readout.logprob,
    )
