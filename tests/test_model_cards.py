"""Provenance wherever a model scores: what a training run records (config.json provenance,
feature_ranges.json, the listing), model cards of runs, older runs, study folds and ensembles, and
the out-of-distribution flags of new images in the results CSV."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from run_fixtures import write_member_run

from cnmc_core.data.cell_features import features_of_files
from cnmc_core.data.feature_ranges import OUTSIDE_TEXT, Z_LIMIT, read_ranges, zscores
from cnmc_core.data.images import read_image
from cnmc_core.data.manifest import resolve_manifest
from cnmc_core.data.synth import GENERATOR_VERSION
from cnmc_core.model_cards import SYNTHETIC_WARNING, card_text, member_score, model_card, run_provenance
from cnmc_core.predict import outside_flags, results_csv, results_frame
from cnmc_core.training.pipeline import plan_split
from cnmc_core.workspace.listing import list_experiments


def _config(run):
    return json.loads((run / "config.json").read_text())


def test_a_run_trained_on_synthetic_data_records_it(synth_workspace):
    run = synth_workspace["run"]
    config = _config(run)
    prov = config["provenance"]
    assert prov["kind"] == "synthetic" and prov["generator"] == "cnmc_core.data.synth"
    assert prov["generator_version"] == GENERATOR_VERSION and prov["generator_seed"] == 2
    assert prov["fingerprint"] == config["dataset_fingerprint"]
    # the training summary is numpy's mean and sd over the training split's files
    manifest = resolve_manifest(config["data"])
    split = plan_split(manifest, config)
    ids = split.loc[split["split"] == "train", "image_id"]
    paths = manifest.set_index("image_id").loc[ids, "path"].tolist()
    values = features_of_files(paths)
    ranges, why = read_ranges(run)
    assert why is None and ranges["n_train"] == len(paths) == ranges["n_images"]
    assert ranges["features"]["area"]["mean"] == pytest.approx(values[:, 0].mean())
    assert ranges["features"]["mean_b"]["sd"] == pytest.approx(values[:, 7].std(ddof=1))
    # the listing has the data kind, the test AUC and the protocol
    row = list_experiments(synth_workspace["artifacts"]).iloc[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert row["data_kind"] == "synthetic" and row["protocol"] == "subject"
    assert row["test_auc"] == pytest.approx(metrics["test"]["roc_auc"])
    assert metrics["protocol_label"] == "subject"
    # the card: recorded synthetic, the test AUC with its CI and protocol, and the warning
    card = model_card(run)
    assert card["kind"] == "synthetic" and card["warning"] == SYNTHETIC_WARNING
    ci = metrics["test"]["ci"]["roc_auc"]
    assert card["score"] == {"what": "test AUC", "auc": metrics["test"]["roc_auc"],
                             "low": ci["low"], "high": ci["high"], "protocol": "subject",
                             "protocol_label": "subject"}
    text = card_text(card)
    assert text.startswith(f"trained on synthetic data (generator v{GENERATOR_VERSION}, seed 2; "
                           "recorded) · test AUC ")
    assert f"[{ci['low']:.3f}, {ci['high']:.3f}], protocol subject" in text


def test_runs_on_a_tree_without_marker_record_real(workspace):
    for run in workspace["runs"]:
        assert _config(run)["provenance"]["kind"] == "real"
        card = model_card(run)
        assert card["kind"] == "real" and card["warning"] is None
        assert card_text(card).startswith("trained on real data (recorded) · test AUC ")


def test_older_runs_derive_from_the_dataset_marker_or_say_unknown(synth_workspace, tmp_path,
                                                                   capsys):
    old = write_member_run(tmp_path, "old-synth", ["a", "b"], data=synth_workspace["data"])
    prov = run_provenance(old)
    assert prov["kind"] == "synthetic" and prov["source"] == "dataset marker"
    assert "not recorded by the run" in prov["note"] and "has its generator marker" in prov["note"]
    assert model_card(old)["warning"] == SYNTHETIC_WARNING
    assert "(generator v" in card_text(model_card(old)) and "dataset marker" in card_text(model_card(old))

    gone = write_member_run(tmp_path, "old-gone", ["a", "b"], data=tmp_path / "deleted")
    prov = run_provenance(gone)
    assert prov["kind"] == "unknown" and "dataset" in prov["note"] and "is gone" in prov["note"]
    assert model_card(gone)["warning"] is None
    assert card_text(model_card(gone)).startswith("training data unknown (not recorded")

    # the `runs` verb says the same as the cards: derived where the dataset tells, else unknown
    from cnmc_core.cli.main import main

    capsys.readouterr()
    assert main(["runs", "--artifacts", str(tmp_path)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["old-synth"].split("data ", 1)[1].startswith("synthetic (derived)")
    assert lines["old-gone"].split("data ", 1)[1].startswith("unknown")

    (gone / "config.json").write_text("{broken")
    prov = run_provenance(gone)
    assert prov["kind"] == "unknown" and "config.json cannot be read" in prov["note"]
    assert member_score(gone)["auc"] is None


def test_a_study_fold_is_scored_by_its_pooled_out_of_fold_auc(tmp_path):
    run = write_member_run(tmp_path, "fold-0", ["a", "b"])
    config = _config(run)
    config["study"] = {"id": "study-x", "preset": "demo_scratch", "fold": 0, "seed": 0}
    (run / "config.json").write_text(json.dumps(config))
    assert member_score(run)["what"].startswith("no test AUC")  # no results yet: the fold's own
    study = tmp_path / "studies" / "study-x"
    study.mkdir(parents=True)
    (study / "metrics.json").write_text(json.dumps({
        "protocol": "subject", "folds": 5, "presets": {"demo_scratch": {
            "n_subjects": 37, "pooled": {"roc_auc": 0.81,
                                         "ci": {"roc_auc": {"low": 0.74, "high": 0.88}}}}}}))
    score = member_score(run)
    assert score["auc"] == 0.81 and (score["low"], score["high"]) == (0.74, 0.88)
    assert score["what"] == "pooled out-of-fold AUC of study study-x (5 folds, 37 subjects)"
    assert card_text(model_card(run)).endswith(
        "pooled out-of-fold AUC of study study-x (5 folds, 37 subjects) 0.810 [0.740, 0.880], "
        "protocol subject")


def test_real_samples_scored_by_a_synthetic_model_are_flagged_in_the_csv(synth_workspace,
                                                                          real_samples):
    run = synth_workspace["run"]
    files = sorted(real_samples.glob("*/*.bmp"))[:6]
    images = [read_image(p) for p in files]
    flags, notes = outside_flags([run], images)
    assert notes == []
    ranges, _ = read_ranges(run)
    z = zscores(features_of_files(files), ranges)
    for text, row in zip(flags, z):
        named = {part.split(" z=")[0] for part in text.split(", ") if part}
        assert named == {n for n, v in zip(ranges["features"], row) if abs(v) > Z_LIMIT}
    assert any(flags)
    frame = results_frame([p.name for p in files], {"synthetic": np.full(len(files), 0.7)},
                          outside=flags)
    back = pd.read_csv(io.BytesIO(results_csv(frame)), keep_default_na=False)
    assert back[OUTSIDE_TEXT].tolist() == flags


def test_an_ensemble_flags_the_union_of_its_members(ws_copy, synth_workspace):
    from cnmc_core.data.feature_ranges import outside_features

    ens, runs = ws_copy["ensemble"], ws_copy["runs"]
    rng = np.random.default_rng(1)
    images = [read_image(p) for p in sorted(ws_copy["data"].rglob("*.bmp"))[:3]]
    images.append(np.clip(images[0].astype(int) * 3, 0, 255).astype(np.uint8))  # too bright
    images.append(rng.integers(1, 255, (60, 60, 3), dtype=np.uint8))  # noise, not a cell
    flags, notes = outside_flags([ens], images)
    assert notes == []
    from cnmc_core.data.feature_ranges import image_features

    feats = image_features(images)
    union = [set() for _ in images]
    for run in runs:
        for k, found in enumerate(outside_features(zscores(feats, read_ranges(run)[0]))):
            union[k] |= set(found)
    assert [{p.split(" z=")[0] for p in f.split(", ") if p} for f in flags] == union
    assert union[-1] and union[-2]
    # an ensemble of real-data runs: no warning; its own test AUC is its score
    card = model_card(ens)
    assert card["kind"] == "real" and card["warning"] is None and len(card["runs"]) == 3
    assert card_text(card).startswith("its runs trained on real data (3) · test AUC")
    # a run without a summary is left out and said so
    saved = runs[0] / "feature_ranges.json"
    kept = saved.read_bytes()
    saved.unlink()
    try:
        flags2, notes2 = outside_flags([ens], images)
    finally:
        saved.write_bytes(kept)  # the module's workspace copy is shared
    assert len(notes2) == 1 and runs[0].name in notes2[0]
    assert len(flags2) == len(images)
