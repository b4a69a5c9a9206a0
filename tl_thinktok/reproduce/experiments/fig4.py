"""Fig. 4 / Fig. 8: the top-15 tokens decoded at MI peaks (peak-token logit lens), per model, and
the ranked thinking-token list they yield (reference jsonl format).

At every peak of every trace, :class:`tl_thinktok.lens.PeakTokenLens` decodes the step
representation (final norm + unembedding, top-1); :func:`tl_thinktok.lens.thinking_token_counts`
keeps purely alphabetic tokens and counts them. With the last block under greedy decoding the
decoded token equals the generated token (checked here and reported as ``lens == generated``).
The reasoning model's list is saved as ``fig4_thinking_tokens.jsonl``
(:class:`tl_thinktok.vocab.ThinkingTokens`), which fig5 uses for real models.

Run alone: ``python experiments/fig4_thinking_tokens.py --model organism --quick``.
"""

from __future__ import annotations

from tl_thinktok.reproduce.context import ExpContext
from tl_thinktok.reproduce.outputs import Summary, save_fig, save_json

NAME = "fig4"
TOP = 15


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
        "the model generated there (1.0 expected at the last block under greedy decoding).",
        files=files,
    )
