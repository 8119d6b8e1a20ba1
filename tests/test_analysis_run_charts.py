"""cnmc_core.analysis.run_charts: the figures of the Compare, Train and Data pages, checked
without a browser (traces, colours, axes), and the page helpers around them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import cell_image

from cnmc_core.analysis.curves import history_frame
from cnmc_core.analysis.experiments import (
    confusion_difference,
    confusion_frame,
    load_curve_points,
    read_configs,
)
from cnmc_core.analysis.run_charts import (
    RUN_PALETTE,
    learning_curve_figure,
    live_curves_figure,
    roc_pr_figures,
    run_color,
    run_confusion_figure,
    subject_counts_figure,
)
from cnmc_core.data.summary import subject_counts, thumbnail
from cnmc_core.workspace.layout import append_history, create_run


def test_a_run_keeps_its_colour_whatever_is_selected():
    ids = [f"20260101-0000{i:02d}-demo-{i:04x}" for i in range(30)]
    colours = {i: run_color(i) for i in ids}
    assert all(c in RUN_PALETTE for c in colours.values())
    assert run_color(ids[3]) == colours[ids[3]]  # a pure function of the id
    assert len(set(colours.values())) >= 10  # spread over the palette


def _history(tmp_path, name, epochs=4, stages=1):
    from cnmc_core.training.config import resolve_config

    run = create_run(resolve_config("demo_scratch", data=str(tmp_path)), tmp_path / "art")
    for e in range(1, epochs + 1):
        stage = 0 if e <= epochs // stages else 1
        append_history(run, {"stage": ["feature_extraction", "fine_tune"][stage],
                             "stage_index": stage, "epoch": e, "loss": 1.0 / e,
                             "val_loss": 1.2 / e, "accuracy": 0.5 + e / 20,
                             "val_accuracy": 0.45 + e / 20, "time": 100.0 + 10 * e,
                             "elapsed": 10.0 * e})
    return history_frame(run)


def test_learning_curves_one_trace_per_run_in_its_colour_and_stage_lines(tmp_path):
    a, b = _history(tmp_path, "a", 6, stages=2), _history(tmp_path, "b", 3)
    colors = {"a": run_color("run-a"), "b": run_color("run-b")}
    fig, boundaries = learning_curve_figure({"a": a, "b": b}, "val_loss", colors=colors)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["a", "b"]
    assert [t.line.color for t in lines] == [colors["a"], colors["b"]]
    assert boundaries == 1  # run a has two stages
    smooth, _ = learning_curve_figure({"a": a}, "val_loss", colors=colors, weight=0.6)
    assert len(smooth.data) == 2  # the raw line stays, faint, behind the smoothed one
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tickformat == "d"


def test_live_curves_share_one_history_whole_epochs_and_a_legend_off_the_axis(tmp_path):
    h = _history(tmp_path, "a", 5)
    fig = live_curves_figure(h)
    xs = {tuple(t.x) for t in fig.data}
    assert xs == {(1, 2, 3, 4, 5)}  # every panel shows the same epochs
    assert {t.name for t in fig.data} == {"train", "val"} and len(fig.data) == 4
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis2.dtick == 1
    assert fig.layout.legend.y > 1  # above the plots, never on the x-axis title


def test_confusion_figures_counts_and_difference(ws_copy):
    a = confusion_frame(ws_copy["runs"][0], "test")
    b = confusion_frame(ws_copy["runs"][1], "test")
    fig = run_confusion_figure(a, "A")
    n = a.to_numpy()
    assert f"{n[0, 0]:,}" in fig.data[0].text[0][0]
    diff = run_confusion_figure(confusion_difference(a, b), "A minus B", diff=True)
    assert diff.data[0].text[0][0].endswith("pp") and diff.data[0].zmid == 0


def test_roc_pr_figures_carry_the_auc_in_the_legend(ws_copy):
    run = ws_copy["runs"][0]
    points = load_curve_points(run, "test")
    roc, pr = roc_pr_figures({"r": points}, {"r": run_color(run.name)})
    assert f"AUC {points['roc_auc']:.3f}" in roc.data[1].name
    assert f"AP {points['average_precision']:.3f}" in pr.data[0].name
    assert roc.layout.showlegend and pr.layout.showlegend


def test_subject_counts_figure_one_bar_group_per_class():
    manifest = pd.DataFrame({
        "image_id": [f"i{k}" for k in range(5)], "label": ["all", "all", "hem", "hem", "hem"],
        "y": [1, 1, 0, 0, 0], "subject": ["1", "2", "H1", "H1", "H2"],
        "source": ["fold_0"] * 5})
    fig = subject_counts_figure(subject_counts(manifest))
    assert [t.name for t in fig.data] == ["HEM (normal)", "ALL (cancer)"]
    assert sum(sum(t.y) for t in fig.data) == 5


def test_read_configs_names_the_damaged_ones(ws_copy, tmp_path):
    good = ws_copy["runs"][0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("[1, 2]")
    missing = tmp_path / "missing"
    configs, problems = read_configs({"good": good, "bad": bad, "missing": missing})
    assert set(configs) == {"good"} and configs["good"]["run_id"] == good.name
    assert "list, not an object" in problems["bad"] and "missing" in problems


def test_saved_ensembles_of_the_chosen_members(ws_copy, tmp_path):
    from cnmc_core.ensemble.live import saved_ensembles_of

    ens = ws_copy["ensemble"]
    members = json.loads((ens / "config.json").read_text())["members"]
    found = saved_ensembles_of({ens.name: ens}, list(reversed(members)))
    assert [e["id"] for e in found] == [ens.name]
    assert set(found[0]["weights"]) == set(members)
    assert saved_ensembles_of({ens.name: ens}, members[:1]) == []


def test_thumbnail_crops_and_fits(tmp_path):
    image = cell_image(size=96, radius=20)
    crop = thumbnail(image, 60, crop=True)
    assert crop.shape == (60, 60, 3)
    assert thumbnail(image, 48).shape == (48, 48, 3)
    big = thumbnail(image[:30, :30], 90)  # enlarged 3x: nearest neighbour keeps pixels sharp
    assert big.shape == (90, 90, 3) and np.array_equal(big[::3, ::3], image[:30, :30])
    with pytest.raises(Exception, match="all black"):
        thumbnail(np.zeros((10, 10, 3), np.uint8), 20, crop=True)
