"""cnmc_core.ensemble.members: what the analysis pages can use, groups of alignable members,
leaf runs through nested ensembles, and the image files behind predictions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cnmc_core.ensemble import members as K
from cnmc_core.ensemble.search import run_search
from cnmc_core.exceptions import ConfigError, DataError, RunError
from cnmc_core.workspace.views import list_members


# --------------------------------------------------------------------------- leaf runs
def test_leaf_runs_and_data_source_through_nested_ensembles(member_store):
    root = member_store["root"]
    ens1, _ = run_search([member_store["a"], member_store["b"]], method="weighted",
                             params={"weighted": {"weights": [3, 1]}}, methods=("mean",),
                             n_boot=0, out_dir=root / "ensembles", runs_root=root, ensemble_id="e1")
    ens2, _ = run_search([ens1, member_store["b"]], method="mean", methods=("mean",), n_boot=0,
                             out_dir=root / "ensembles", runs_root=root, ensemble_id="e2")
    leaves = dict(K.leaf_runs(ens2))
    assert leaves[member_store["a"]] == pytest.approx(0.375)
    assert leaves[member_store["b"]] == pytest.approx(0.625)
    assert K.data_source(ens2) == "/data/a"
    assert K.data_source(member_store["b"]) is None
    members, _ = list_members(root)
    assert members.set_index("member_id").loc["e2", "has_model"]
    # A moved workspace: member paths recorded in config.json no longer exist.
    config = json.loads((ens2 / "config.json").read_text())
    config["member_paths"] = ["/gone/e1", "/gone/b"]
    (ens2 / "config.json").write_text(json.dumps(config))
    assert dict(K.leaf_runs(ens2))[member_store["a"]] == pytest.approx(0.375)


def test_a_copied_workspace_uses_its_own_members_never_the_originals(member_store, tmp_path):
    root, a, b = member_store["root"], member_store["a"], member_store["b"]
    ens1, _ = run_search([a, b], method="weighted", params={"weighted": {"weights": [3, 1]}},
                         methods=("mean",), n_boot=0, runs_root=root, ensemble_id="e1")
    ens2, _ = run_search([ens1, b], method="mean", methods=("mean",), n_boot=0, runs_root=root,
                         ensemble_id="e2")
    assert ens2.parent == root / "ensembles"  # beside its members by default
    config = json.loads((ens2 / "config.json").read_text())
    assert config["member_paths"] == ["ensembles/e1", f"runs/{b.name}"]  # no absolute path
    copy = tmp_path / "elsewhere" / "artifacts"
    shutil.copytree(root, copy)
    old = tmp_path / "old" / "artifacts"
    shutil.copytree(root, old)

    def inside(leaves, where):
        return all(Path(run).is_relative_to(where) for run, _ in leaves)

    # the original is changed (a run loses its model): the copy does not notice
    (a / "model.keras").unlink()
    leaves = K.leaf_runs(copy / "ensembles" / "e2")
    assert inside(leaves, copy)
    assert dict(leaves)[copy / "runs" / a.name] == pytest.approx(0.375)
    # ... and then deleted: the copy still works
    shutil.rmtree(root)
    assert dict(K.leaf_runs(copy / "ensembles" / "e2"))[copy / "runs" / b.name] == \
        pytest.approx(0.625)
    assert K.data_source(copy / "ensembles" / "e2") == "/data/a"
    # An older ensemble stored absolute paths: they are never followed, even to a folder that
    # exists (here another workspace); its members are found by id in its own workspace.
    for name in ("e1", "e2"):
        cfg_file = old / "ensembles" / name / "config.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["member_paths"] = [str(copy / ref) for ref in cfg["member_paths"]]
        cfg_file.write_text(json.dumps(cfg))
    assert inside(K.leaf_runs(old / "ensembles" / "e2"), old)
    # ... and where the member is missing from its own workspace, it is missing: no fallback
    # to the path outside
    shutil.rmtree(old / "runs" / b.name)
    with pytest.raises(RunError, match=rf"member '{b.name}' not found in its workspace"):
        K.leaf_runs(old / "ensembles" / "e2")
    # a reference that would leave the workspace is refused as damaged
    cfg_file = copy / "ensembles" / "e1" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["member_paths"] = ["runs/..", "runs/../../x"]
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="not a run or ensemble id of its workspace"):
        K.leaf_runs(copy / "ensembles" / "e1")


def test_an_ensemble_is_created_only_in_its_members_workspace(member_store, tmp_path):
    with pytest.raises(ConfigError, match=r"is not in the workspace .* never by a path outside "
                                          r"it\. Instead, create it in .*artifacts/ensembles"):
        run_search([member_store["a"], member_store["b"]], method="mean", methods=("mean",), n_boot=0,
                   out_dir=tmp_path / "ens", runs_root=member_store["root"])
    assert not (tmp_path / "ens").exists()
    other = tmp_path / "other" / "runs" / "x"
    other.parent.mkdir(parents=True)
    shutil.copytree(member_store["b"], other)
    # a member of another workspace is refused where it is named (workspace.layout)
    with pytest.raises(RunError, match="outside the workspace"):
        run_search([member_store["a"], other], method="mean", methods=("mean",), n_boot=0,
                   runs_root=member_store["root"])
    assert not (member_store["root"] / "ensembles").exists()


def _cycle(root: Path) -> Path:
    """Two completed ensembles that list each other (a damaged workspace)."""
    for name, other in (("x", "y"), ("y", "x")):
        folder = root / "ensembles" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({
            "kind": "ensemble", "ensemble_id": name, "members": [other],
            "member_paths": [f"ensembles/{other}"], "member_kinds": ["ensemble"],
            "weights": {other: 1.0}, "method": "mean"}))
        (folder / "status.json").write_text(json.dumps({"state": "completed"}))
    return root / "ensembles" / "x"


def test_nesting_is_limited_once_for_every_walk(tmp_path):
    from cnmc_core.predict import score_member

    x = _cycle(tmp_path / "artifacts")
    message = rf"ensembles nested deeper than {K.MAX_NESTING} levels \(a cycle\?\)"
    for walk in (K.leaf_runs, K.data_source, lambda p: score_member(p, [])):
        with pytest.raises(RunError, match=message):
            walk(x)


def test_leaf_runs_refuses_a_run_without_model(member_store):
    (member_store["a"] / "model.keras").unlink()
    with pytest.raises(RunError, match="has no model.keras"):
        K.leaf_runs(member_store["a"])


def test_image_paths_of_a_dataset(tmp_path):
    from conftest import make_kaggle_tree

    data = make_kaggle_tree(tmp_path / "data", n_all=1, n_hem=1, per_subject=1)
    paths = K.image_paths(data)
    assert "UID_1_1_1_all.bmp" in paths and Path(paths["UID_1_1_1_all.bmp"]).is_file()
    with pytest.raises(DataError):
        K.image_paths(tmp_path / "missing")
