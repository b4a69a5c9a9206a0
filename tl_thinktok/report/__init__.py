"""Reports of one trace: the lens at its peaks, and a self-contained HTML page.

* :func:`peak_readout` / :class:`PeakReadout` — the peak-token lens at the MI peaks of an
  :class:`~tl_thinktok.trace.MITrace` (top-``k``, rank of the generated token);
* :func:`render_report` / :func:`write_report` — the HTML report (``tl-thinktok trace``);
* :func:`token_strings` — per-token display strings that keep the spaces.

Example:
    >>> from tl_thinktok.report import write_report
    >>> write_report(trace, model, "report.html")   # doctest: +SKIP
"""

from tl_thinktok.report.html import mi_plot_svg, render_report, write_report
from tl_thinktok.report.readout import PeakReadout, peak_readout
from tl_thinktok.report.text import token_strings

__all__ = [
    "PeakReadout",
    "mi_plot_svg",
    "peak_readout",
    "render_report",
    "token_strings",
    "write_report",
]
