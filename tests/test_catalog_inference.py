"""cnmc_core.catalog (what the analysis pages can use) and cnmc_core.inference (uploads checked
and decoded from bytes, scoring and explaining with runs and ensembles)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cnmc_core import catalog as K
from cnmc_core import inference as I
from cnmc_core.ensemble import build_ensemble
from cnmc_core.exceptions import ConfigError, DataError, RunError
from conftest import cell_image


# --------------------------------------------------------------------------- catalog
def write_run(root: Path, run_id: str, ids, *, state="completed", protocol="subject",
              model=True, data=None) -> Path:
    path = root / "runs" / run_id
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({
        "run_id": run_id, "kind": "run", "name": "demo", "model": "cnn", "image_size": 32,
        "split_protocol": protocol, "dataset_fingerprint": "fp", "created": 1.0,
        **({"data": str(data)} if data else {})}))
    (path / "status.json").write_text(json.dumps({"state": state, "error": "boom" if
                                                  state == "failed" else None}))
    if state == "completed":
        rows = [{"image_id": i, "split": s, "y": k % 2, "prob": 0.3 + 0.4 * (k % 2)}
                for s in ("val", "test") for k, i in enumerate(ids)]
        pd.DataFrame(rows).to_csv(path / "predictions.csv", index=False)
        (path / "metrics.json").write_text(json.dumps({"test": {"weighted_f1": 0.9}}))
    if model:
        (path / "model.keras").write_bytes(b"not really a model")
    return path


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "artifacts"
    a = write_run(root, "20260101-000001-demo-aaaa", ["x1", "x2", "x3", "x4"], data="/data/a")
    b = write_run(root, "20260101-000002-demo-bbbb", ["x1", "x2", "x3", "x4"])
    c = write_run(root, "20260101-000003-demo-cccc", ["x1", "x2", "x3", "x9"])
    write_run(root, "20260101-000004-demo-dddd", [], state="failed")
    bad = root / "runs" / "20260101-000005-damaged"
    bad.mkdir()
    (bad / "config.json").write_text("{")
    (bad / "status.json").write_text("{not json")
    return {"root": root, "a": a, "b": b, "c": c}


def test_list_members_groups_alignable_runs_and_explains_the_rest(store):
    members, skipped = K.list_members(store["root"])
    assert list(members.columns) == K.MEMBER_COLUMNS
    assert set(members["member_id"]) == {store[k].name for k in "abc"}
    group = members.set_index("member_id")["group"]
    assert group[store["a"].name] == group[store["b"].name] != group[store["c"].name]
    assert members["test_weighted_f1"].tolist() == [0.9, 0.9, 0.9]
    assert members["label"].tolist() == ["demo-cccc", "demo-bbbb", "demo-aaaa"]
    reasons = dict(zip(skipped["member_id"], skipped["state"]))
    assert reasons == {"20260101-000004-demo-dddd": "failed", "20260101-000005-damaged": "damaged"}
    assert "boom" in skipped["reason"].tolist()


def test_list_members_of_an_empty_workspace(tmp_path):
    members, skipped = K.list_members(tmp_path / "nothing")
    assert members.empty and skipped.empty and list(members.columns) == K.MEMBER_COLUMNS


def test_workspace_signature_changes_when_a_run_finishes(store):
    before = K.workspace_signature(store["root"])
    assert K.workspace_signature(store["root"]) == before
    status = store["root"] / "runs" / "20260101-000004-demo-dddd" / "status.json"
    status.write_text(json.dumps({"state": "completed"}))
    assert K.workspace_signature(store["root"]) != before


def test_short_labels_stay_unique():
    ids = ["20260101-demo-aaaa", "20260102-demo-aaaa", "ens-ga-20260101-000000-abc123"]
    assert K.short_labels(ids, ["demo", "demo", ""], ["run", "run", "ensemble"]) == \
        ["20260101-demo-aaaa", "20260102-demo-aaaa", "ens-ga-abc123"]


def test_leaf_runs_and_data_source_through_nested_ensembles(store):
    root = store["root"]
    ens1, _ = build_ensemble([store["a"], store["b"]], method="weighted",
                             params={"weighted": {"weights": [3, 1]}}, compare=("mean",),
                             n_boot=0, out_dir=root / "ensembles", ensemble_id="e1")
    ens2, _ = build_ensemble([ens1, store["b"]], method="mean", compare=("mean",), n_boot=0,
                             out_dir=root / "ensembles", ensemble_id="e2")
    leaves = dict(K.leaf_runs(ens2))
    assert leaves[store["a"]] == pytest.approx(0.375)
    assert leaves[store["b"]] == pytest.approx(0.625)
    assert K.data_source(ens2) == "/data/a"
    assert K.data_source(store["b"]) is None
    members, _ = K.list_members(root)
    assert members.set_index("member_id").loc["e2", "has_model"]
    # A moved workspace: member paths recorded in config.json no longer exist.
    config = json.loads((ens2 / "config.json").read_text())
    config["member_paths"] = ["/gone/e1", "/gone/b"]
    (ens2 / "config.json").write_text(json.dumps(config))
    assert dict(K.leaf_runs(ens2))[store["a"]] == pytest.approx(0.375)


def test_leaf_runs_refuses_a_run_without_model(store):
    (store["a"] / "model.keras").unlink()
    with pytest.raises(RunError, match="has no model.keras"):
        K.leaf_runs(store["a"])


def test_image_paths_of_a_dataset(tmp_path):
    from conftest import make_kaggle_tree

    data = make_kaggle_tree(tmp_path / "data", n_all=1, n_hem=1, per_subject=1)
    paths = K.image_paths(data)
    assert "UID_1_1_1_all.bmp" in paths and Path(paths["UID_1_1_1_all.bmp"]).is_file()
    with pytest.raises(DataError):
        K.image_paths(tmp_path / "missing")


# --------------------------------------------------------------------------- uploads
def encode(ext: str, image=None) -> bytes:
    image = cell_image(size=120, radius=40, seed=1) if image is None else image
    ok, buf = cv2.imencode(f".{ext}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("ext", ["png", "bmp", "jpg", "tif"])
def test_decode_upload_reads_every_accepted_format(ext):
    up = I.decode_upload(f"cell.{ext}", encode(ext))
    assert up.image.shape == (120, 120, 3) and up.image.dtype == np.uint8
    assert I.image_size_from_header(encode(ext))[1:] == (120, 120)
    if ext != "jpg":  # lossless: the same pixels, in RGB order
        np.testing.assert_array_equal(up.image, cell_image(size=120, radius=40, seed=1))


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0" * 4


@pytest.mark.parametrize("name, data, message", [
    ("empty.png", b"", "is empty"),
    ("notes.png", b"just some text", "is not a BMP, PNG, JPEG or TIFF"),
    ("model.pkl", b"\x80\x04\x95pickle", "is not a BMP, PNG, JPEG or TIFF"),
    ("bomb.png", png_header(100_000, 100_000), "more than the limit"),
    ("cut.png", encode("png")[:60], "cannot be decoded"),
    ("black.png", encode("png", np.zeros((50, 50, 3), np.uint8)), "all black"),
])
def test_decode_upload_refuses_with_a_message(name, data, message):
    with pytest.raises(DataError, match=message) as info:
        I.decode_upload(name, data)
    assert name in str(info.value)


def test_decode_upload_size_limit():
    with pytest.raises(DataError, match="more than the limit of"):
        I.decode_upload("big.bmp", encode("bmp"), max_bytes=1000)


def test_check_uploads_keeps_going_and_drops_duplicates():
    good = encode("png")
    accepted, refused, notes = I.check_uploads(
        [("a.png", good), ("b.txt", b"hello"), ("c.png", good), ("d.bmp", encode("bmp"))])
    assert [u.name for u in accepted] == ["a.png", "d.bmp"]
    assert len(refused) == 1 and "b.txt" in refused[0]
    assert "c.png has the same content as a.png" in notes[0]
    accepted, _, notes = I.check_uploads([("a.png", good), ("d.bmp", encode("bmp"))], max_files=1)
    assert len(accepted) == 1 and "only the first 1" in notes[0]


@pytest.mark.parametrize("p, t, shown", [(0.4996, 0.5, "0.4996"), (0.5, 0.5, "0.500"),
                                         (0.123, 0.5, "0.123"), (0.7349, 0.735, "0.7349")])
def test_format_prob_never_hides_the_side_of_the_threshold(p, t, shown):
    assert I.format_prob(p, t) == shown


def test_results_frame_and_csv():
    frame = I.results_frame(["=cmd.png", "b.png"], {"A": [0.2, 0.9], "B": [0.4, 0.7]},
                            np.array([0.3, 0.8]), 0.5, "mean")
    assert frame.columns.tolist() == ["file", "P(ALL) A", "P(ALL) B", "P(ALL) mean",
                                      "predicted", "threshold"]
    assert frame["predicted"].tolist() == ["HEM", "ALL"]
    assert frame["file"][0] == "'=cmd.png"  # never a formula in a spreadsheet
    back = pd.read_csv(__import__("io").BytesIO(I.results_csv(frame)))
    assert back["P(ALL) mean"].tolist() == [0.3, 0.8]
    with pytest.raises(ConfigError):
        I.results_frame(["a"], {"A": [0.1], "B": [0.2]})


# --------------------------------------------------------------------------- scoring
def test_score_and_explain_with_runs_and_an_ensemble(workspace, tmp_path):
    runs = workspace["runs"]
    image = cell_image(size=200, radius=60, seed=5)
    probs = I.score_runs(runs[:2], [image, image[::-1]])
    assert set(probs) == {runs[0].name, runs[1].name}
    assert all(p.shape == (2,) and ((p >= 0) & (p <= 1)).all() for p in probs.values())
    ens, _ = build_ensemble(runs[:2], method="weighted", params={"weighted": {"weights": [1, 3]}},
                            compare=("mean",), n_boot=0, out_dir=tmp_path, ensemble_id="e")
    cache: dict = {}
    p_ens = I.score_member(ens, [image, image[::-1]], cache)
    np.testing.assert_allclose(p_ens, 0.25 * probs[runs[0].name] + 0.75 * probs[runs[1].name],
                               rtol=1e-5)
    assert set(cache) == {runs[0].name, runs[1].name}
    ex = I.explain_selection(runs[:2], image, method="gradcam", target="predicted")
    assert len(ex.members) == 2 and ex.ensemble_heatmap is not None
    assert {m.target for m in ex.members} == {"all" if ex.ensemble_prob >= 0.5 else "hem"}
    assert ex.ensemble_heatmap.min() >= 0 and ex.ensemble_heatmap.max() <= 1
    prepared, cam = I.run_heatmaps(runs[0], [image], target="hem")
    assert prepared.shape[1:3] == cam.heatmaps.shape[1:3]
    with pytest.raises(ConfigError, match="at least one run"):
        I.explain_selection([], image)


def test_group_label_names_protocol_dataset_counts_and_members():
    import pandas as pd

    from cnmc_core.catalog import group_label

    members = pd.DataFrame({"group": ["g", "g", "h"], "protocol": ["subject"] * 3,
                            "dataset": ["0123456789abcdef"] * 3, "n_val": [1361] * 3, "n_test": [363] * 3})
    assert group_label(members, "g") == "subject protocol, dataset 01234567: 1,361 val / 363 test images, 2 run(s)"
    assert group_label(members, "h", "member(s)").endswith("1 member(s)")


def test_comparable_groups_and_default_members():
    import pandas as pd

    from cnmc_core.catalog import comparable_groups, default_members

    members = pd.DataFrame({"group": ["a", "b", "b", "c", "c", "c"],
                            "member_id": ["r1", "r2", "e1", "r3", "r4", "r5"],
                            "kind": ["run", "run", "ensemble", "run", "run", "run"]})
    assert comparable_groups(members) == ["c", "b"]  # largest first, singletons left out
    assert comparable_groups(members[members["group"] == "a"]) == ["a"]  # unless all are single
    assert default_members(members[members["group"] == "c"], 2) == ["r3", "r4"]
    ens_only = pd.DataFrame({"group": ["g", "g"], "member_id": ["e1", "e2"], "kind": ["ensemble"] * 2})
    assert default_members(ens_only, 4) == ["e1", "e2"]
