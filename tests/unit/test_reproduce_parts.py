"""reproduce building blocks: AccuracyCurve (round trip, plot), Summary / data files / README /
check_outputs, the experiment registry."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tl_thinktok.reproduce.curves import AccuracyCurve, Series, plot_curves
from tl_thinktok.reproduce.outputs import (
    Summary,
    check_outputs,
    mean_ci,
    save_csv,
    save_json,
    write_readme,
)
from tl_thinktok.reproduce.registry import (
    ALIASES,
    EXPERIMENTS,
    UnknownExperimentError,
    load_experiment,
    resolve,
)


def curve() -> AccuracyCurve:
    return AccuracyCurve(
        dataset="organism", n_items=50, x_label="k",
        series=[Series("thinking", [0, 1, 4], [0.8, 0.4, 0.1], color="tab:red"),
                Series("random", [0, 4], [0.8, 0.75], std=[0.0, 0.05], style="s--")],
        x_ticks=[0, 1, 4],
    )  # fmt: skip


def test_accuracy_curve_round_trip(tmp_path):
    c = curve()
    back = AccuracyCurve.load(c.save(tmp_path / "c" / "curve.json"))
    assert back == c
    assert isinstance(back.series[1], Series) and back.series[1].std == [0.0, 0.05]


def test_accuracy_curve_plot_draws_every_series_and_the_band():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = curve().plot()
    assert [tuple(line.get_ydata()) for line in ax.lines] == [(0.8, 0.4, 0.1), (0.8, 0.75)]
    assert len(ax.collections) == 1  # the ± std band of the random series
    assert ax.get_title() == "organism (n=50)" and list(ax.get_xticks()) == [0, 1, 4]
    plt.close(ax.figure)
    fig = plot_curves([curve(), curve()], "two")
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one curve"):
        plot_curves([], "none")


def test_series_lengths_are_checked():
    with pytest.raises(ValueError, match="3 x values but 2 accuracies"):
        Series("s", [0, 1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="1 std values for 2 x values"):
        Series("s", [0, 1], [0.1, 0.2], std=[0.1])


def test_summary_files_readme_and_check_outputs(tmp_path):
    files = [save_json(tmp_path, "fig2", {"mi": [0.1, 0.2]}),
             save_csv(tmp_path, "fig2", [{"a": 1, "b": 0.5}, {"a": 2, "c": "x"}])]  # fmt: skip
    s = Summary("fig2", "title", "organism", "organism", {"acc": np.float64(0.5)}, files=files)
    path = s.save(tmp_path)
    assert path == tmp_path / "fig2.summary.json"
    assert Summary.load(path) == Summary("fig2", "title", "organism", "organism", {"acc": 0.5},
                                         files=files)  # fmt: skip
    assert (tmp_path / "fig2.csv").read_text().splitlines()[0] == "a,b,c"
    readme = write_readme(tmp_path).read_text()
    assert "## fig2: title" in readme and "acc: 0.5" in readme
    assert check_outputs(tmp_path, ["fig2"]) == []
    assert check_outputs(tmp_path, ["table1"]) == ["table1: no summary"]
    (tmp_path / "fig2.csv").unlink()
    assert check_outputs(tmp_path, ["fig2"]) == ["fig2: missing fig2.csv"]
    Summary("fig2", "t", "m", "d", {"x": math.nan}).save(tmp_path)
    assert check_outputs(tmp_path, ["fig2"]) == [
        "fig2: non-finite key numbers (NaN without a zero count: x)"
    ]
    with pytest.raises(ValueError):
        save_json(tmp_path, "bad", {"x": math.inf})


def test_mean_ci():
    assert mean_ci([]) == (pytest.approx(math.nan, nan_ok=True), 0.0)
    assert mean_ci([2.0]) == (2.0, 0.0)
    m, h = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(1.96 * 1.0 / math.sqrt(3))


def test_registry_resolves_aliases_and_loads_every_experiment():
    for alias, name in ALIASES.items():
        assert resolve(alias) == name
    for name in EXPERIMENTS:
        mod = load_experiment(name)
        assert mod.NAME == name and callable(mod.run)
    with pytest.raises(UnknownExperimentError, match="unknown experiment 'fig99'.*fig2"):
        resolve("fig99")


def test_summary_json_has_no_nan_token(tmp_path):
    p = Summary("x", "t", "m", "d", {"v": math.nan}).save(tmp_path)
    assert json.loads(p.read_text())["numbers"]["v"] is None


def test_readme_names_the_versions_and_host(tmp_path):
    from types import SimpleNamespace

    from tl_thinktok.hosts.versions import runtime_line

    Summary("fig2", "title", "organism", "organism", {"acc": 0.5}).save(tmp_path)
    assert "Made with" not in write_readme(tmp_path).read_text()  # nothing known: left out
    old = "tl-thinktok: TransformerLens 0.0.1, host hooked, transformers 0.0.2, torch 0.0.3"
    (tmp_path / "timings.json").write_text(json.dumps({"runtime": old, "model": "organism"}))
    readme = write_readme(tmp_path).read_text()
    assert (
        "Made with TransformerLens 0.0.1, host hooked, transformers 0.0.2, torch 0.0.3." in readme
    )
    now = runtime_line("bridge").removeprefix("tl-thinktok: ")
    readme = write_readme(tmp_path, SimpleNamespace(host="bridge")).read_text()
    assert f"Made with {now}." in readme and "0.0.1" not in readme  # this run, not the last


def test_plot_curves_puts_one_legend_outside_every_panel():
    """fig5/fig7: the legend never covers a line or the random-control band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    other = AccuracyCurve(dataset="gsm8k", n_items=10, x_label="k",
                          series=[Series("thinking", [0, 4], [0.5, 0.2]),
                                  Series("found", [0, 4], [0.5, 0.1])])  # fmt: skip
    fig = plot_curves([curve(), other], "t")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["thinking", "random", "found"]
    box = legend.get_window_extent(r)
    for ax in fig.axes:
        a = ax.get_window_extent(r)
        assert box.y1 <= a.y0 or box.x1 <= a.x0 or a.x1 <= box.x0  # beside or below, never over
    plt.close(fig)


def test_fig3_draws_table2_numbers_under_the_trajectories(tmp_path, monkeypatch):
    """fig3_table2.png carries Table 2 (means over all traces), not only three trajectories."""
    import matplotlib

    matplotlib.use("Agg")
    from types import SimpleNamespace

    from tl_thinktok.reproduce.experiments import fig3_table2
    from tl_thinktok.trace import MITrace

    rng = np.random.default_rng(0)

    def trace(i: int, scale: float, peaks: list[int]) -> MITrace:
        mi = scale * rng.random(20)
        return MITrace(tokens=list(range(21)), prompt_len=1, layer=-1, mi=mi, peaks=peaks,
                       resid_norm=np.ones(20), id=f"p{i}", correct=i % 2 == 0)  # fmt: skip

    sets = {"model": [trace(i, 0.1, [3, 9]) for i in range(5)],
            "base": [trace(i, 1.0, []) for i in range(5)]}  # fmt: skip
    import torch

    resid = {"resid": torch.randn(20, 8, generator=torch.Generator().manual_seed(0)),
             "answer": torch.randn(8, generator=torch.Generator().manual_seed(1))}  # fmt: skip
    ctx = SimpleNamespace(
        traces=lambda which: SimpleNamespace(model=f"m-{which}", traces=sets[which],
                                             residuals=lambda tr: resid),
        base_model="m-base", out=tmp_path, dataset="organism", seed=0,
    )  # fmt: skip
    figs = []
    real_save = fig3_table2.save_fig

    def keep_and_save(out, name, fig):
        figs.append(fig)
        return real_save(out, name, fig)

    monkeypatch.setattr(fig3_table2, "save_fig", keep_and_save)
    fig3_table2.run(ctx)
    (fig,) = figs
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    texts |= {c.get_text().get_text() for ax in fig.axes for tab in ax.tables
              for c in tab.get_celld().values()}  # fmt: skip
    mean_reasoning = np.mean([t.mi.mean() for t in sets["model"]])
    std_base = np.mean([t.mi.std() for t in sets["base"]])
    assert f"{mean_reasoning:.4f}" in texts and f"{std_base:.4f}" in texts
    assert "n/a (n=0)" in texts  # the base traces have no peak: AOM undefined, not 0
    assert "reasoning: m-model" in texts and "base: m-base" in texts
    assert (tmp_path / "fig3_table2.png").is_file()


def test_readme_names_the_command_that_regenerates_its_folder(tmp_path):
    """figures/smollm2/README.md says how to regenerate SmolLM2's figures, not the organism's."""
    import json as _json

    from tl_thinktok.reproduce.outputs import write_readme

    out = tmp_path / "smol"
    out.mkdir()
    (out / "timings.json").write_text(_json.dumps({"model": "smollm2-135m", "base_model": None}))
    text = write_readme(out).read_text()
    assert "reproduce --model smollm2-135m --base-model none --out smol/" in text
    (out / "timings.json").write_text(_json.dumps({"model": "organism", "base_model": "x"}))
    assert "`python -m tl_thinktok reproduce --out smol/`" in write_readme(out).read_text()
