"""Fig. 4 / Fig. 8: the top-15 tokens decoded at MI peaks (peak-token logit lens), per model, and
the ranked thinking-token list they yield (reference jsonl format).

At every peak of every trace, :class:`tl_thinktok.lens.PeakTokenLens` decodes the step
representation (final norm + unembedding, top-1); :func:`tl_thinktok.lens.thinking_token_counts`
keeps purely alphabetic tokens and counts them. With the last block under greedy decoding the
decoded token equals the generated token (checked here and reported as ``lens == generated``).
The reasoning model's list is saved as ``fig4_thinking_tokens.jsonl``
(:class:`tl_thinktok.vocab.ThinkingTokens`), which fig5 uses for real models.

What the alphabetic list leaves out (:func:`peak_structure`): the class of the token at every peak
(alphabetic, digit, comma, other punctuation, line break, special such as EOS), and the peak rate
per step by *sentence type* — a sentence ends at ``.``/``!``/``?``, a line break, ``</think>`` or a
special token, and its type is its first token (e.g. *Wait*, *Therefore*, *Then*; *First / Then /
Now / Next* are also pooled as "step opening"). Each rate (peaks / steps in sentences of that type)
has a trace-bootstrap 95% CI and is set against the order-shuffled null: the IQR rule is blind to
order, so shuffling a trajectory moves its peaks to a uniformly random set of as many steps; the
null's 95% range is over ``N_SHUFFLES`` such draws of every trace.

Run alone: ``python experiments/fig4_thinking_tokens.py --model organism --quick``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.outputs import Summary, save_fig, save_json
from tl_thinktok.reproduce.stats import percentile_interval, trace_bootstrap

NAME = "fig4"
TOP = 15
N_SHUFFLES = 1000
N_BOOT = 1000
#: Sentence types reported (at least this many steps in sentences of the type).
MIN_TYPE_STEPS = 100
#: First words pooled as one sentence type.
GROUPS = {"step opening (First/Then/Now/Next)": ("First", "Then", "Now", "Next")}
SENTENCE_END = (".", "!", "?", "</think>")


def token_class(text: str, special: bool) -> str:
    """Class of one decoded token: special, line break, comma, digit, alphabetic or other."""
    if special:
        return "special (EOS, end of turn)"
    if "\n" in text:
        return "line break"
    s = text.strip()
    if s == ",":
        return "comma"
    if s.isdigit():
        return "digit"
    if s.isascii() and s.isalpha():
        return "alphabetic"
    return "other"


def sentence_types(texts: Sequence[str], special: Sequence[bool]) -> list[str]:
    """The type of the sentence each token belongs to: the stripped first token of the sentence
    (a sentence ends with the token that ends it)."""
    out, current, start = [], "", True
    for t, sp in zip(texts, special, strict=True):
        if start:
            current = t.strip() or repr(t)
            start = False
        out.append(current)
        if sp or "\n" in t or t.strip() in SENTENCE_END:
            start = True
    return out


def type_counts(types: list[str], peaks: Sequence[int], names: dict[str, set]) -> np.ndarray:
    """``[len(names), 2]``: steps and peaks of one trace in sentences of each named type (a set
    of first tokens)."""
    pk = np.zeros(len(types), dtype=bool)
    pk[list(peaks)] = True
    out = np.zeros((len(names), 2), dtype=np.float64)
    for j, members in enumerate(names.values()):
        m = np.array([t in members for t in types], dtype=bool)
        out[j] = m.sum(), (m & pk).sum()
    return out


def peak_structure(
    traces: list, tokenizer: Any, seed: int, n_boot: int = N_BOOT, n_shuffles: int = N_SHUFFLES
) -> dict[str, Any]:
    """Token classes at the peaks and the pooled peak rate by sentence type, with its
    trace-bootstrap CI and the order-shuffled null's 95% range."""
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    types, classes = [], {}
    non_alpha: dict[str, int] = {}
    for tr in traces:
        gen = list(tr.gen_ids)
        tx = [tokenizer.decode([g]) for g in gen]
        sp = [g in special_ids for g in gen]
        types.append(sentence_types(tx, sp))
        for p in tr.peaks:
            c = token_class(tx[p], sp[p])
            classes[c] = classes.get(c, 0) + 1
            if c != "alphabetic":
                w = tx[p].strip() or repr(tx[p])
                non_alpha[w] = non_alpha.get(w, 0) + 1
    count: dict[str, int] = {}
    for ty in types:
        for t in ty:
            count[t] = count.get(t, 0) + 1
    names = {t: {t} for t, c in sorted(count.items(), key=lambda kv: -kv[1])
             if c >= MIN_TYPE_STEPS}  # fmt: skip
    for g, members in GROUPS.items():
        if sum(count.get(m, 0) for m in members) >= MIN_TYPE_STEPS:
            names[g] = set(members)
    per = np.array([type_counts(ty, tr.peaks, names) for ty, tr in zip(types, traces,
                                                                        strict=True)])  # fmt: skip
    per = per.reshape(len(traces), len(names), 2)  # also with no trace or no type
    rng = np.random.default_rng(seed)
    # order-shuffled null: each trace's peaks at a uniformly random set of as many steps
    masks = [np.array([[t in m for t in ty] for m in names.values()], dtype=bool)
             .reshape(len(names), len(ty)) for ty in types]  # fmt: skip
    null = np.zeros((n_shuffles, len(names)))
    for mk, tr in zip(masks, traces, strict=True):
        k = len(tr.peaks)
        if k:
            sel = np.argsort(rng.random((n_shuffles, mk.shape[1])), axis=1)[:, :k]
            null += mk[:, sel].sum(-1).T
    null /= np.maximum(per[:, :, 0].sum(0), 1.0)
    n = len(traces)
    by_type = {}
    for j, name in enumerate(names):

        def rate(i, j=j):
            steps = per[i, j, 0].sum()
            return per[i, j, 1].sum() / steps if steps else float("nan")

        point, lo, hi = trace_bootstrap(rate, n, rng, n_boot)
        nlo, nhi = percentile_interval(null[:, j])
        by_type[name] = {"rate": point, "ci": [lo, hi], "steps": int(per[:, j, 0].sum()),
                         "peaks": int(per[:, j, 1].sum()), "null_mean": float(null[:, j].mean()),
                         "null_range": [nlo, nhi]}  # fmt: skip
    n_peaks = int(sum(classes.values()))
    n_steps = int(sum(len(t) for t in types))
    return {
        "n_traces": n,
        "n_peaks": n_peaks,
        "n_steps": n_steps,
        "peak_rate": n_peaks / n_steps if n_steps else float("nan"),
        "peaks_by_token_class": dict(sorted(classes.items(), key=lambda kv: -kv[1])),
        "non_alphabetic_peak_tokens": dict(sorted(non_alpha.items(), key=lambda kv: -kv[1])),
        "peak_rate_by_sentence_type": by_type,
    }


def structure_numbers(role: str, st: dict[str, Any]) -> dict[str, Any]:
    """Summary numbers of :func:`peak_structure`."""
    cls = st["peaks_by_token_class"]
    n = st["n_peaks"]
    out: dict[str, Any] = {
        f"{role}: peaks by token class": ", ".join(f"{c} {k}" for c, k in cls.items()) or "-",
        f"{role}: peak rate per step (peaks / steps)": f"{st['peak_rate']:.4f} ({n} / "
        f"{st['n_steps']})",
    }
    if n:
        out[f"{role}: share of peaks on non-alphabetic tokens"] = 1 - cls.get("alphabetic", 0) / n
        out[f"{role}: share of peaks on commas, digits and special tokens"] = (
            sum(k for c, k in cls.items() if c in ("comma", "digit") or c.startswith("special")) / n
        )
        out[f"{role}: non-alphabetic tokens at peaks (top 8)"] = ", ".join(
            f"{w} ({k})" for w, k in list(st["non_alphabetic_peak_tokens"].items())[:8]
        )
    for name, r in st["peak_rate_by_sentence_type"].items():
        out[f"{role}: peak rate in '{name}' sentences (95% CI; shuffled null)"] = (
            f"{r['rate']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]; null {r['null_mean']:.3f} "
            f"[{r['null_range'][0]:.3f}, {r['null_range'][1]:.3f}]; {r['peaks']} / {r['steps']}"
        )
    return out


def lens_counts(ctx: ExpContext, which: str):
    """Lens top-1 tokens at every peak of every trace, counted; and how often they equal the
    generated token."""
    from tl_thinktok.lens import PeakTokenLens, thinking_token_counts

    ts = ctx.traces(which)
    model = ctx.load(ts.model)
    lens = PeakTokenLens(layer=ctx.layer, k=1)
    results, agree, total = [], 0, 0
    for tr in ts.traces:
        if not tr.peaks:
            continue
        res = lens.decode(model, ts.residuals(tr)["resid"], steps=tr.peaks)
        results.append(res)
        gen = tr.gen_ids
        for s, tid in zip(res.steps, res.token_ids[:, 0].tolist(), strict=True):
            total += 1
            agree += int(tid == gen[s])
    return ts, model, thinking_token_counts(results), agree, total


def run(ctx: ExpContext) -> Summary:
    import matplotlib.pyplot as plt

    from tl_thinktok.vocab import ThinkingTokens

    roles = ["model"] + (["base"] if ctx.base_model else [])
    fig, axes = plt.subplots(1, len(roles), figsize=(5.5 * len(roles), 3.6), squeeze=False)
    data, numbers, files = {}, {}, []
    for ax, which in zip(axes[0], roles, strict=True):
        ts, model, counts, agree, total = lens_counts(ctx, which)
        top = counts.top(TOP)
        role = "reasoning" if which == "model" else "base"
        if top:
            ax.bar(
                range(len(top)),
                [c for _, c in top],
                color="tab:red" if which == "model" else "tab:gray",
            )
            ax.set_xticks(range(len(top)), [w for w, _ in top], rotation=60, fontsize=8)
        ax.set_title(
            f"{role}: {ts.model}\n{total} peaks, {sum(counts.counts.values())} alphabetic",
            fontsize=9,
        )
        ax.set_ylabel("count at peaks")
        if not top:
            ax.text(0.5, 0.5, "no alphabetic token at any peak", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9)  # fmt: skip
            ax.set_xticks([])
        data[role] = {
            "model": ts.model,
            "top": top,
            "n_peaks": total,
            "n_alphabetic": int(sum(counts.counts.values())),
            "lens_equals_generated": agree / total if total else None,
            "all_counts": dict(counts.counts),
        }
        numbers[f"{role}: top-5 at peaks"] = ", ".join(f"{w} ({c})" for w, c in top[:5]) or "-"
        struct = peak_structure(ts.traces, model.tokenizer, ctx.seed)
        data[role]["structure"] = struct
        numbers.update(structure_numbers(role, struct))
        if total:
            numbers[f"{role}: lens == generated token"] = agree / total
        if which == "model" and top:
            tt = ThinkingTokens.from_counts(model.tokenizer, counts, k=TOP)
            tt.save_jsonl(ctx.out / f"{NAME}_thinking_tokens.jsonl")
            files.append(f"{NAME}_thinking_tokens.jsonl")
    fig.tight_layout()
    files = [save_fig(ctx.out, NAME, fig), save_json(ctx.out, NAME, data)] + files
    return Summary(
        name=NAME,
        title="Top-15 tokens decoded at MI peaks (paper Figs. 4 / 8) + the thinking-token list",
        model=", ".join(d["model"] for d in data.values()),
        dataset=ctx.dataset,
        numbers=numbers,
        paper="R1-Distill-Llama-8B top tokens: So, Let, Hmm, I, That, Okay, The, Now, First, "
        "But, Wait, Since, Then, Therefore, Maybe.",
        notes="lens == generated is the fraction of peaks whose top-1 lens token is the token "
        "the model generated there (1.0 expected at the last block under greedy decoding). "
        "Token classes count every peak (the top-15 keeps alphabetic tokens only). Peak rate by "
        "sentence type: peaks / steps in sentences whose first token is the type (pooled over "
        f"traces), trace-bootstrap 95% CI, against the order-shuffled null ({N_SHUFFLES} draws: "
        "each trace's peaks at a random set of as many steps; mean and 95% range); types with "
        f"≥ {MIN_TYPE_STEPS} steps.",
        files=files,
    )
