"""AppTest tests of the analysis pages (Errors, Ensemble, Explain, Predict), each page file run
alone: over an empty workspace, and over a copy of the fixture workspace (three completed tiny
runs, a failed one) with a saved ensemble.

AppTest cannot click plotly charts: the chart-to-set logic is covered by test_live_ensemble.py
and test_browser_analysis.py; here the same sets are chosen through the page's selector.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import pandas as pd
import pytest
from conftest import cell_image
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
PAGES = ("4_Errors", "5_Ensemble", "6_Explain", "7_Predict")
TIMEOUT = 120


@pytest.fixture(scope="module")
def base_ws(workspace, tmp_path_factory):
    """A copy of the session workspace plus a GA ensemble of its three completed runs."""
    from cnmc_core.ensemble.search import run_search

    root = tmp_path_factory.mktemp("analysis-pages") / "artifacts"
    shutil.copytree(workspace["artifacts"], root)
    runs = sorted(p for p in (root / "runs").iterdir() if "fixture_" in p.name)
    run_search(runs, method="ga", methods=("mean",), n_boot=20, out_dir=root / "ensembles",
                   runs_root=root, ensemble_id="ens-ga-fixture", params={"ga": {"generations": 10, "restarts": 2}})
    return root


@pytest.fixture
def ws(base_ws, monkeypatch):
    monkeypatch.setenv("CNMC_ARTIFACTS", str(base_ws))
    return base_ws


@pytest.fixture
def private_ws(base_ws, tmp_path, monkeypatch):
    """A copy that a test may write to (saved ensembles)."""
    root = tmp_path / "artifacts"
    shutil.copytree(base_ws, root, ignore=shutil.ignore_patterns("model.keras"))
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    return root


def run_page(name: str, setup=None) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / f"{name}.py"), default_timeout=TIMEOUT)
    if setup:
        setup(at)
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def png(image) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


# --------------------------------------------------------------------------- every page
@pytest.mark.parametrize("name", PAGES)
def test_empty_workspace_says_what_to_do(name, tmp_path, monkeypatch):
    monkeypatch.setenv("CNMC_ARTIFACTS", str(tmp_path / "empty"))
    at = run_page(name)
    assert_clean(at)
    assert not at.error
    assert any("Train" in t for t in texts(at.info)), texts(at.info)


def test_failed_run_is_listed_not_hidden(ws):
    at = run_page("4_Errors")
    assert_clean(at)
    assert any("cannot be analysed" in e.label for e in at.expander)
    failed = at.dataframe[0].value
    assert (failed["state"] == "failed").any()
    assert failed["reason"].str.contains("MemoryError").any()


# --------------------------------------------------------------------------- Errors
def test_errors_page_sets_filter_and_handoff(ws):
    at = run_page("4_Errors")
    assert_clean(at)
    assert len(at.multiselect[0].value) == 3  # the runs of the group, not the ensemble
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "12"
    gallery = [s for s in texts(at.subheader) if s.startswith("Images ")]
    assert gallery, texts(at.subheader)
    # Hand the default set (what most models miss) to Explain; the page runs alone here, so it
    # stays and says what to do.
    at.button(key="errors_explain").click().run()
    assert_clean(at)
    handoff = at.session_state["cnmc_error_set"]
    assert handoff["split"] == "test" and len(handoff["member_paths"]) == 3
    assert len(handoff["image_ids"]) == int(gallery[0].rsplit(": ", 1)[1])
    assert any("Explain page" in t for t in texts(at.info))
    # Choose "only <model> gets right/wrong" (one with images if any; the tiny models' errors
    # vary from session to session).
    box = at.selectbox(key="errors_unique")
    option = next((o for o in box.options if not o.endswith("(0)")), box.options[1])
    box.select_index(box.options.index(option)).run()
    assert_clean(at)
    title = [s for s in texts(at.subheader) if s.startswith("Images ")][0]
    right_or_wrong = "right" if "gets right" in option else "wrong"
    assert "that only" in title and f"gets {right_or_wrong}" in title
    assert int(title.rsplit(": ", 1)[1]) == int(option.rsplit("(", 1)[1].rstrip(")"))
    # The class filter restricts every count.
    at.segmented_control(key="errors_class").set_value("hem").run()
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Images"] == "4"
    at.radio(key="errors_split").set_value("val").run()
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Images"] == "5"


def test_errors_page_with_one_run_asks_for_another(ws):
    at = run_page("4_Errors")
    ms = at.multiselect[0]
    at = ms.set_value(ms.value[:1]).run()
    assert_clean(at)
    assert any("at least two" in t for t in texts(at.warning))


# --------------------------------------------------------------------------- Ensemble
def default_members(root):
    """The members the Ensemble page starts with (the group's runs, newest first) and their
    aligned predictions."""
    from cnmc_core.ensemble.align import align_runs
    from cnmc_core.workspace.views import list_members

    members, _ = list_members(root)
    runs = members[members["kind"] == "run"]
    return runs["member_id"].tolist(), align_runs(runs["path"].tolist())


def shown_f1(at) -> list[str]:
    return [m.value for m in at.metric if m.label == "Weighted F1"]


def test_ensemble_sliders_update_val_and_test(ws):
    from cnmc_core.ensemble.live import live_reports

    ids, aligned = default_members(ws)
    at = run_page("5_Ensemble")
    assert_clean(at)
    assert [s.label for s in at.slider][-1].startswith("Threshold")
    assert len(at.slider) == 4
    expected = live_reports(aligned, [1, 1, 1], 0.5)
    assert shown_f1(at) == [f"{expected[s]['weighted_f1']:.4f}" for s in ("val", "test")]
    # Every slider move shows the metrics of the new weights, on val and test side by side.
    for weights, threshold in (([0.0, 1.0, 1.0], 0.5), ([0.0, 0.3, 1.0], 0.5),
                               ([0.0, 0.3, 1.0], 0.0)):
        for j, w in enumerate(weights):
            at.slider[j].set_value(w)
        at.slider(key="ens_threshold").set_value(threshold).run()
        assert_clean(at)
        expected = live_reports(aligned, weights, threshold)
        assert shown_f1(at) == [f"{expected[s]['weighted_f1']:.4f}" for s in ("val", "test")]
    assert [m.value for m in at.metric if m.label == "Accuracy"][1] == "0.6667"  # all ALL
    for s in at.slider[:3]:
        s.set_value(0.0)
    at.run()
    assert any("Every weight is 0" in t for t in texts(at.error))


def test_ensemble_buttons_set_the_sliders(ws):
    def small_ga(at):
        at.session_state["ens_ga_gen"] = 5
        at.session_state["ens_ga_restarts"] = 1
        at.session_state["ens_ga_pop"] = 10

    at = run_page("5_Ensemble", small_ga)
    at.button(key="ens_fit_ga").click().run()
    assert_clean(at)
    weights = [s.value for s in at.slider[:3]]
    assert weights != [1.0, 1.0, 1.0] and sum(weights) == pytest.approx(1.0, abs=0.02)
    assert any("Sliders set by Genetic algorithm" in t for t in texts(at.caption))
    at.button(key="ens_fit_mean").click().run()
    assert [s.value for s in at.slider[:3]] == [0.33, 0.33, 0.33]
    at.button(key="ens_fit_greedy").click().run()
    assert_clean(at)
    assert any("Greedy selection" in t for t in texts(at.caption))


def test_ensemble_comparison_table_and_saved_ensemble(ws):
    at = run_page("5_Ensemble")
    at.number_input(key="ens_n_boot").set_value(100)
    at.button(key="ens_compare").click().run()
    assert_clean(at)
    table = at.dataframe[-2].value
    assert {"equal weights (mean)", "genetic algorithm (paper)",
            "stacking (logistic regression)"} <= set(table["method"])
    assert table["test wF1 95% CI"].str.contains("by subject").all()
    assert "paper: GA weights" in set(at.dataframe[-1].value["method"])
    # The saved GA ensemble of the same members can load its weights into the sliders.
    assert at.selectbox(key="ens_saved").value == "ens-ga-fixture"
    at.button(key="ens_load_saved").click().run()
    assert_clean(at)
    assert any("saved ensemble ens-ga-fixture" in t for t in texts(at.caption))


def test_ensemble_save_and_its_mistakes(private_ws):
    at = run_page("5_Ensemble")
    at.slider[2].set_value(0.0)
    at.text_input(key="ens_name").input("my-ensemble")
    at.button(key="ens_save").click().run()
    assert_clean(at)
    assert any("Saved as **my-ensemble**" in t for t in texts(at.success))
    config = pd.read_json(private_ws / "ensembles" / "my-ensemble" / "config.json", typ="series")
    assert config["method"] == "weighted" and sorted(config["weights"].values())[0] == 0.0
    at.button(key="ens_save").click().run()
    assert any("already exists" in t for t in texts(at.error))
    at.text_input(key="ens_name").input("../escape").run()
    at.button(key="ens_save").click().run()
    assert any("Invalid ensemble id" in t for t in texts(at.error))
    assert not (private_ws / "escape").exists()


# --------------------------------------------------------------------------- Explain
def test_explain_page_heatmaps_sources_and_uploads(ws):
    at = run_page("6_Explain")
    assert_clean(at)
    assert not at.error, texts(at.error)
    assert not any(h.startswith("Grad-CAM") for h in texts(at.subheader))  # not before asked
    at.button(key="explain_go").click().run()
    assert_clean(at)
    assert "explain_go" not in [b.key for b in at.button]  # asked once: gone for the session
    heads = texts(at.subheader)
    assert any(h.startswith("Grad-CAM for class") for h in heads)
    assert "Activations of a layer" in heads
    at.segmented_control(key="explain_target").set_value("both").run()
    at.segmented_control(key="explain_method").set_value("both").run()
    assert_clean(at)
    assert sum(h.startswith("Grad-CAM") for h in texts(at.subheader)) == 4
    # An ensemble instead of runs.
    at.radio(key="explain_kind").set_value("A saved ensemble").run()
    assert_clean(at)
    assert any("Its runs:" in t for t in texts(at.caption))
    # No error set yet.
    at.radio(key="explain_source").set_value("From an error set (Errors page)").run()
    assert any("No error set yet" in t for t in texts(at.info))
    # Uploads: refused with a message, or explained.
    at.radio(key="explain_source").set_value("Upload an image").run()
    at.file_uploader(key="explain_upload").set_value(("x.png", b"not an image", "image/png")).run()
    assert_clean(at)
    assert any("x.png is not a BMP, PNG, JPEG or TIFF" in t for t in texts(at.error))
    at.file_uploader(key="explain_upload").set_value(
        ("cell.png", png(cell_image(size=150, radius=50, seed=2)), "image/png")).run()
    assert_clean(at)
    assert not at.error
    assert any("cell.png" in t for t in texts(at.markdown))


def test_explain_page_takes_the_error_set(ws):
    from cnmc_core.workspace.views import list_members

    members, _ = list_members(ws)
    runs = members[members["kind"] == "run"]["path"].tolist()
    ids = pd.read_csv(Path(runs[0]) / "predictions.csv").query("split == 'test'")["image_id"]

    def handoff(at):
        at.session_state["cnmc_error_set"] = {
            "title": "missed by all 3 models", "split": "test", "image_ids": ids[:2].tolist(),
            "member_paths": runs[:2], "labels": {}}

    at = run_page("6_Explain", handoff)
    assert_clean(at)
    assert at.radio(key="explain_source").value == "From an error set (Errors page)"
    assert len(at.multiselect(key="explain_runs").value) == 2
    assert any("missed by all 3 models" in t for t in texts(at.caption))
    assert len(at.selectbox(key="explain_image_errors").options) == 2
    assert any(h.startswith("Grad-CAM for class") for h in texts(at.subheader))  # no click needed


# --------------------------------------------------------------------------- Predict
def test_predict_page_scores_refuses_and_downloads(ws):
    at = run_page("7_Predict")
    assert_clean(at)
    assert at.radio(key="predict_kind").value == "A saved ensemble"
    good = png(cell_image(size=200, radius=60, seed=7))
    files = [("cell.png", good, "image/png"), ("empty.bmp", b"", "image/bmp"),
             ("weights.pkl.png", b"\x80\x04\x95 pickle bytes", "image/png"),
             ("copy.png", good, "image/png"),
             ("cell2.bmp", cv2.imencode(".bmp", cell_image(size=90, seed=8))[1].tobytes(),
              "image/bmp")]
    at.file_uploader(key="predict_files").set_value(files).run()
    assert_clean(at)
    errors = texts(at.error)
    assert any("empty.bmp is empty" in e for e in errors)
    assert any("weights.pkl.png is not a BMP, PNG, JPEG or TIFF" in e for e in errors)
    assert any("copy.png has the same content as cell.png" in t for t in texts(at.info))
    assert {m.label: m.value for m in at.metric}["Images scored"] == "2"
    frame = at.dataframe[0].value
    assert frame["file"].tolist() == ["cell.png", "cell2.bmp"]
    assert "P(ALL) ens-ga-fixture" in frame.columns
    assert frame.filter(like="P(ALL)").shape[1] == 4  # the three runs and the ensemble
    assert len(at.get("download_button")) == 1
    # Several runs: their mean.
    at.radio(key="predict_kind").set_value("Runs").run()
    ms = at.multiselect(key="predict_runs")
    at = ms.set_value(ms.options[:2]).run()
    assert_clean(at)
    assert "P(ALL) mean" in at.dataframe[0].value.columns


def test_predict_page_all_refused(ws):
    at = run_page("7_Predict")
    at.file_uploader(key="predict_files").set_value(
        [("a.png", b"", "image/png"), ("b.tif", b"II*\x00broken", "image/tiff")]).run()
    assert_clean(at)
    assert len(at.error) == 2
    assert any("No image to score" in t for t in texts(at.warning))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
