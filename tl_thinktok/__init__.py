"""tl-thinktok: thinking tokens as information peaks, as TransformerLens hooks.

Pipeline: estimate (``mi``) → locate (``peaks``) → read (``lens``) → intervene (``suppress``,
``recycle``, ``ttts``) → bound (``bounds``) → experiments.
"""

from __future__ import annotations

import importlib

from tl_thinktok import _compat, _progress

_compat.install()
_progress.quiet_tqdm_auto()  # in a Jupyter kernel only

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "tl_thinktok.loading",
    "LoadInfo": "tl_thinktok.loading",
    "hsic_nocco": "tl_thinktok.mi",
    "find_peaks": "tl_thinktok.peaks",
    "trace_stats": "tl_thinktok.peaks",
    "TraceStats": "tl_thinktok.peaks",
    "step_residuals": "tl_thinktok.probe",
    "answer_representation": "tl_thinktok.probe",
    "MIProbe": "tl_thinktok.probe",
    "MITrace": "tl_thinktok.trace",
    "AccuracyCurve": "tl_thinktok.reproduce.curves",
    "PeakTokenLens": "tl_thinktok.lens",
    "thinking_token_counts": "tl_thinktok.lens",
    "ThinkingTokens": "tl_thinktok.vocab",
    "SuppressTokens": "tl_thinktok.interventions.suppress",
    "random_control": "tl_thinktok.interventions.suppress",
    "RepresentationRecycling": "tl_thinktok.interventions.recycle",
    "Component": "tl_thinktok.interventions.base",
    "attach_all": "tl_thinktok.interventions.base",
    "HSIC": "tl_thinktok.mi",
    "EstimateInfo": "tl_thinktok.mi",
    "estimate": "tl_thinktok.mi",
    "hsic_nocco_standardized": "tl_thinktok.mi",
    "hsic_biased": "tl_thinktok.mi",
    "residual_norm": "tl_thinktok.mi",
    "aggregate": "tl_thinktok.peaks",
    "LensResult": "tl_thinktok.lens",
    "TokenCounts": "tl_thinktok.lens",
    "budget_forcing": "tl_thinktok.interventions.ttts",
    "reference_ttts": "tl_thinktok.interventions.ttts",
    "TTTSResult": "tl_thinktok.interventions.ttts",
    "ReasoningProcess": "tl_thinktok.bounds",
    "BoundsCurve": "tl_thinktok.bounds",
    "fano_lower_bound": "tl_thinktok.bounds",
    "hellman_raviv_upper_bound": "tl_thinktok.bounds",
    "step_measures": "tl_thinktok.importance",
    "StepMeasures": "tl_thinktok.importance",
    "LayerStatesProbe": "tl_thinktok.importance",
    "CounterfactualImportance": "tl_thinktok.counterfactual",
    "CounterfactualResult": "tl_thinktok.counterfactual",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tl_thinktok' has no attribute {name!r}")
