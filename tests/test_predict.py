"""cnmc_core.predict and cnmc_core.explain.members: scoring and explaining new images with runs and
ensembles; results tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import cell_image

from cnmc_core import predict as I
from cnmc_core.ensemble.search import run_search
from cnmc_core.exceptions import ConfigError
from cnmc_core.explain import members as X


# --------------------------------------------------------------------------- scoring
def test_score_and_explain_with_runs_and_an_ensemble(ws_copy):
    runs = ws_copy["runs"]
    image = cell_image(size=200, radius=60, seed=5)
    probs = I.score_runs(runs[:2], [image, image[::-1]])
    assert set(probs) == {runs[0].name, runs[1].name}
    assert all(p.shape == (2,) and ((p >= 0) & (p <= 1)).all() for p in probs.values())
    ens, _ = run_search(runs[:2], method="weighted", params={"weighted": {"weights": [1, 3]}},
                        methods=("mean",), n_boot=0, ensemble_id="e",
                        runs_root=ws_copy["root"])
    cache: dict = {}
    p_ens = I.score_member(ens, [image, image[::-1]], cache)
    np.testing.assert_allclose(p_ens, 0.25 * probs[runs[0].name] + 0.75 * probs[runs[1].name],
                               rtol=1e-5)
    assert set(cache) == {runs[0].name, runs[1].name}
    ex = X.explain_selection(runs[:2], image, method="gradcam", target="predicted")
    assert len(ex.members) == 2 and ex.ensemble_heatmap is not None
    assert {m.target for m in ex.members} == {"all" if ex.ensemble_prob >= 0.5 else "hem"}
    assert ex.ensemble_heatmap.min() >= 0 and ex.ensemble_heatmap.max() <= 1
    # a batch: one explanation per image, each run's map at the size of the image it saw
    batch = X.explain_images(runs[:2], [image, image[::-1]], target="hem")
    assert len(batch) == 2 and all(ex.target == "hem" for ex in batch)
    assert all(m.heatmap.shape == m.image.shape[:2] for ex in batch for m in ex.members)
    with pytest.raises(ConfigError, match="at least one run"):
        X.explain_selection([], image)


def test_explain_and_predict_agree_on_a_stacking_ensemble(ws_copy):
    """The class a stacking ensemble's maps explain is the class its stacking model predicts
    (the P(ALL) Predict shows), not the one its display weights would give."""
    from cnmc_core.ensemble.search import run_search
    from cnmc_core.predict import member_threshold, score_member

    runs = ws_copy["runs"]
    image = cell_image(size=96, radius=30, seed=3)
    images = [image, image[::-1], cell_image(size=96, radius=22, seed=5)]
    ens, _ = run_search(runs, method="stacking", methods=("mean",), n_boot=0,
                        ensemble_id="stack", runs_root=ws_copy["root"])
    p = score_member(ens, images)
    t = member_threshold(ens)
    explained = X.explain_images([ens], images)
    for ex, p_i in zip(explained, p):
        assert ex.ensemble_prob == pytest.approx(float(p_i))
        assert ex.target == ("all" if p_i >= t else "hem")
        assert {m.target for m in ex.members} == {ex.target}


def test_a_stacking_ensemble_scores_new_images_with_its_logistic_regression(ws_copy):
    from sklearn.linear_model import LogisticRegression

    from cnmc_core.ensemble.combiners import logit_features

    runs = ws_copy["runs"]
    images = [cell_image(size=200, radius=r, seed=r) for r in (40, 60, 80)]
    ens, _ = run_search(runs, method="stacking", methods=("mean",), n_boot=0,
                        ensemble_id="stack-lr", runs_root=ws_copy["root"])
    cache: dict = {}
    got = I.score_member(ens, images, cache)
    stacking = pd.read_json(ens / "config.json", typ="series")["stacking"]
    # the same model as scikit-learn's, built from the saved coefficients
    lr = LogisticRegression()
    lr.classes_ = np.array([0, 1])
    lr.coef_ = np.array([stacking["coef"]])
    lr.intercept_ = np.array([stacking["intercept"]])
    members = np.column_stack([cache[r.name] for r in runs])
    np.testing.assert_allclose(got, lr.predict_proba(logit_features(members))[:, 1], rtol=1e-10)


def test_group_label_names_protocol_dataset_counts_and_members():
    import pandas as pd

    from cnmc_core.ensemble.members import group_label

    members = pd.DataFrame({"group": ["g", "g", "h"], "protocol": ["subject"] * 3,
                            "dataset": ["0123456789abcdef"] * 3, "n_val": [1361] * 3, "n_test": [363] * 3})
    assert group_label(members, "g") == "subject protocol, dataset 01234567: 1,361 val / 363 test images, 2 run(s)"
    assert group_label(members, "h", "member(s)").endswith("1 member(s)")


def test_comparable_groups_and_default_members():
    import pandas as pd

    from cnmc_core.ensemble.members import comparable_groups, default_members

    members = pd.DataFrame({"group": ["a", "b", "b", "c", "c", "c"],
                            "member_id": ["r1", "r2", "e1", "r3", "r4", "r5"],
                            "kind": ["run", "run", "ensemble", "run", "run", "run"]})
    assert comparable_groups(members) == ["c", "b"]  # largest first, singletons left out
    assert comparable_groups(members[members["group"] == "a"]) == ["a"]  # unless all are single
    assert default_members(members[members["group"] == "c"], 2) == ["r3", "r4"]
    ens_only = pd.DataFrame({"group": ["g", "g"], "member_id": ["e1", "e2"], "kind": ["ensemble"] * 2})
    assert default_members(ens_only, 4) == ["e1", "e2"]
