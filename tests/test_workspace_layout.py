"""cnmc_core.workspace.layout: run and member references resolve inside the workspace (ids, paths,
symlinks), and history.jsonl is read safely (a line being written, a damaged file)."""

from __future__ import annotations

import json
import os

import pytest

from cnmc_core.exceptions import CnmcError, RunError
from cnmc_core.workspace.layout import (
    append_history,
    create_run,
    inside_workspace,
    read_history,
    resolve_member,
    run_path,
)


@pytest.fixture
def two_workspaces(tmp_path):
    """``ws`` with a run and an ensemble, and ``other`` (another workspace) with a run."""
    ws, other = tmp_path / "ws", tmp_path / "other"
    run = create_run({"name": "r", "model": "m", "stages": []}, ws)
    ens = ws / "ensembles" / "ens-1"
    ens.mkdir(parents=True)
    (ens / "config.json").write_text(json.dumps({"kind": "ensemble"}))
    foreign = create_run({"name": "f", "model": "m", "stages": []}, other)
    return {"ws": ws, "run": run, "ens": ens, "foreign": foreign, "tmp": tmp_path}


def test_ids_and_paths_inside_the_workspace_are_accepted(two_workspaces):
    w = two_workspaces
    assert run_path(w["run"].name, w["ws"]) == w["ws"] / "runs" / w["run"].name
    assert run_path(str(w["run"]), w["ws"]) == w["run"]
    assert resolve_member(w["run"].name, w["ws"]) == w["ws"] / "runs" / w["run"].name
    assert resolve_member("ens-1", w["ws"]) == w["ens"]
    assert resolve_member(w["ens"], w["ws"]) == w["ens"]
    # a relative path with '..' that stays inside is a path inside
    inside = w["ws"] / "runs" / ".." / "runs" / w["run"].name
    assert resolve_member(str(inside), w["ws"]) == inside


def test_the_default_workspace_is_the_environments(two_workspaces, monkeypatch):
    w = two_workspaces
    monkeypatch.setenv("CNMC_ARTIFACTS", str(w["ws"]))
    assert run_path(str(w["run"])) == w["run"] and resolve_member(w["run"].name) == \
        w["ws"] / "runs" / w["run"].name
    with pytest.raises(RunError, match="outside the workspace"):
        resolve_member(w["foreign"])


@pytest.mark.parametrize("how", ["absolute", "dotdot", "relative-dotdot"])
def test_paths_outside_the_workspace_are_refused(two_workspaces, monkeypatch, how):
    w = two_workspaces
    monkeypatch.chdir(w["ws"] / "runs")
    ref = {"absolute": str(w["foreign"]),
           "dotdot": str(w["ws"] / "runs" / ".." / ".." / "other" / "runs" / w["foreign"].name),
           "relative-dotdot": os.path.join("..", "..", "other", "runs", w["foreign"].name)}[how]
    message = (rf"The run or ensemble folder .* resolves to {w['foreign'].resolve()}, outside "
               rf"the workspace {w['ws'].resolve()}: .*Point --artifacts \(or \$CNMC_ARTIFACTS\) at "
               rf"the artifacts folder that holds it \(this one is in {w['tmp'].resolve() / 'other'}\)")
    with pytest.raises(RunError, match=message):
        resolve_member(ref, w["ws"])
    with pytest.raises(RunError, match="outside the workspace"):
        run_path(ref, w["ws"])
    with pytest.raises(RunError, match="outside the workspace"):
        inside_workspace(ref, w["ws"])


def test_symlinks_pointing_out_are_refused_by_id_and_by_path(two_workspaces):
    w = two_workspaces
    link = w["ws"] / "runs" / "link"
    link.symlink_to(w["foreign"], target_is_directory=True)
    for ref in ("link", str(link)):
        with pytest.raises(RunError, match="outside the workspace"):
            resolve_member(ref, w["ws"])
        with pytest.raises(RunError, match="outside the workspace"):
            run_path(ref, w["ws"])
    # a workspace reached through a symlink is still itself
    alias = w["tmp"] / "alias"
    alias.symlink_to(w["ws"], target_is_directory=True)
    assert resolve_member(w["run"].name, alias) == alias / "runs" / w["run"].name


@pytest.mark.parametrize("ref", ["../x", "..", "a b", "", "/nonexistent/run"])
def test_what_is_neither_a_folder_nor_a_safe_id_is_an_invalid_id(two_workspaces, ref):
    with pytest.raises(CnmcError, match="Invalid run id"):
        resolve_member(ref, two_workspaces["ws"])


def test_unknown_ids_name_where_they_were_looked_for(two_workspaces):
    with pytest.raises(RunError, match=r"Run 'nope' not found: no run or ensemble of that id exists "
                                       r"in .*ws/runs, .*ws/ensembles"):
        resolve_member("nope", two_workspaces["ws"])
    with pytest.raises(RunError, match="No run at"):
        run_path("nope", two_workspaces["ws"])


# --------------------------------------------------------------------------- history
def test_history_survives_a_line_being_written_and_names_a_damaged_file(tmp_path):
    append_history(tmp_path, {"epoch": 1, "note": "é"})
    with open(tmp_path / "history.jsonl", "ab") as fh:
        fh.write('{"epoch": 2, "note": "é'.encode()[:-1])  # cut inside the two bytes of é
    assert read_history(tmp_path)["epoch"].tolist() == [1]
    (tmp_path / "history.jsonl").write_bytes(b'{"epoch": 1}\n{"note": "\xff"}\n')
    with pytest.raises(RunError, match=r"history.jsonl is not UTF-8 text \(byte 0xff at offset "
                                       r"23\); the history is damaged"):
        read_history(tmp_path)
    assert read_history(tmp_path / "missing").empty
