"""Who may do what, enforced in the library: the permission matrix, and launch, cancel, delete,
ensemble save, study launch and the workspace settings refusing an actor without the role
(whatever a page sends), with ``launched_by`` recorded on everything launched."""

from __future__ import annotations

import ast
import getpass
import json
from pathlib import Path

import pytest
from conftest import make_kaggle_tree

from cnmc_core.auth.roles import ACTIONS, Actor, allowed, local_actor, owner_of, require
from cnmc_core.exceptions import AccessError, ConfigError

REPO = Path(__file__).resolve().parents[1]
VIEWER = Actor("vera", "viewer")
TRAINER = Actor("tina", "trainer")
OTHER = Actor("otto", "trainer")
ADMIN = Actor("ada", "admin")

# action -> (viewer, trainer on own, trainer on another's, admin on another's)
MATRIX = {
    "view": (True, True, True, True),
    "score": (True, True, True, True),
    "launch": (False, True, True, True),
    "launch_study": (False, True, True, True),
    "save_ensemble": (False, True, True, True),
    "configure": (False, True, True, True),
    "cancel": (False, True, False, True),
    "delete": (False, True, False, True),
}


def test_matrix_covers_every_action():
    assert set(MATRIX) == set(ACTIONS)


@pytest.mark.parametrize("action", sorted(MATRIX))
def test_permission_matrix(action):
    viewer, own, others, admin = MATRIX[action]
    assert allowed(VIEWER, action, owner="vera") is viewer
    assert allowed(TRAINER, action, owner="tina") is own
    assert allowed(TRAINER, action, owner="otto") is others
    assert allowed(ADMIN, action, owner="otto") is admin


def test_refusals_say_what_is_needed():
    with pytest.raises(AccessError, match="vera is a viewer and may not launch runs: that needs "
                                          "the trainer role.*users set-role vera trainer"):
        require(VIEWER, "launch")
    with pytest.raises(AccessError, match="tina may not cancel run r1: it is otto's"):
        require(TRAINER, "cancel", owner="otto", what="run r1")
    with pytest.raises(AccessError, match="not recorded as anyone's"):  # an old run: admins only
        require(TRAINER, "delete", owner=None)
    assert require(ADMIN, "delete", owner=None) == ADMIN


@pytest.mark.parametrize("fake", ["admin", {"name": "x", "role": "admin"}, ("x", "admin")])
def test_anything_but_an_actor_is_refused(fake):
    with pytest.raises(AccessError, match="actor must be a cnmc_core.auth.Actor"):
        require(fake, "launch")


def test_actor_checks_its_fields():
    with pytest.raises(ConfigError, match="role must be one of viewer, trainer, admin"):
        Actor("x", "root")
    with pytest.raises(ConfigError, match="without ':'"):
        Actor("a:b", "viewer")
    assert Actor("x", "viewer").launched_by == "dashboard:x"


def test_local_actor_is_the_os_user_as_admin():
    actor = local_actor("cli")
    assert actor.role == "admin" and actor.name == getpass.getuser()
    assert actor.launched_by == f"cli:{getpass.getuser()}"
    assert require(None, "cancel", owner="someone").name == getpass.getuser()


@pytest.fixture
def data(tmp_path_factory):
    return make_kaggle_tree(tmp_path_factory.mktemp("data"), n_all=8, n_hem=7, per_subject=4)


def _config(data):
    from cnmc_core.training.config import resolve_config

    return resolve_config("demo_scratch", data=str(data), epochs=1)


def test_launch_refused_for_a_viewer_and_recorded_for_a_trainer(tmp_path, data):
    from cnmc_core.training.launch import start_run, start_runs

    config = _config(data)
    config_with_claim = dict(config, launched_by="dashboard:ada")  # a page cannot claim it
    with pytest.raises(AccessError, match="vera is a viewer and may not launch runs"):
        start_runs([config], tmp_path, detach=False, actor=VIEWER)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    run = start_run(config_with_claim, tmp_path, detach=False, actor=TRAINER)
    assert json.loads((run / "config.json").read_text())["launched_by"] == "dashboard:tina"
    assert owner_of(run) == "tina"
    run = start_run(config, tmp_path, detach=False)  # a script: the OS user
    assert json.loads((run / "config.json").read_text())["launched_by"] == \
        f"local:{getpass.getuser()}"


def _queued_run(root, data, owner: str | None):
    from cnmc_core.workspace.layout import create_run

    config = _config(data)
    if owner:
        config["launched_by"] = f"dashboard:{owner}"
    return create_run(config, root)


def test_cancel_own_run_only_unless_admin(tmp_path, data):
    from cnmc_core.workspace.queue import cancel_run
    from cnmc_core.workspace.status import read_status

    theirs = _queued_run(tmp_path, data, "otto")
    for actor, message in ((VIEWER, "vera is a viewer and may not cancel runs"),
                           (TRAINER, f"tina may not cancel run {theirs.name}: it is otto's")):
        with pytest.raises(AccessError, match=message):
            cancel_run(theirs, actor=actor)
        assert read_status(theirs)["state"] == "queued"
        assert not (theirs / "cancel").exists() and not list(theirs.glob("*cancel*"))
    mine = _queued_run(tmp_path, data, "tina")
    assert cancel_run(mine, actor=TRAINER)["state"] == "cancelled"
    assert cancel_run(theirs, actor=ADMIN)["state"] == "cancelled"
    legacy = _queued_run(tmp_path, data, None)
    with pytest.raises(AccessError, match="not recorded as anyone's"):
        cancel_run(legacy, actor=TRAINER)


def test_delete_own_run_only_unless_admin(tmp_path, data):
    from cnmc_core.workspace.layout import delete_run
    from cnmc_core.workspace.status import write_status

    theirs = _queued_run(tmp_path, data, "otto")
    write_status(theirs, state="completed")
    with pytest.raises(AccessError):
        delete_run(theirs, actor=TRAINER)
    with pytest.raises(AccessError):
        delete_run(theirs, actor=VIEWER)
    assert theirs.is_dir()
    mine = _queued_run(tmp_path, data, "tina")
    write_status(mine, state="completed")
    delete_run(mine, actor=TRAINER)
    delete_run(theirs, actor=ADMIN)
    assert not mine.exists() and not theirs.exists()


def test_ensemble_save_refused_for_a_viewer_and_recorded(tmp_path, three_runs):
    from cnmc_core.ensemble.align import align_runs
    from cnmc_core.ensemble.live import save_live_ensemble
    from cnmc_core.ensemble.search import run_search

    _, runs = three_runs
    aligned = align_runs(runs)
    out = runs[0].parent.parent / "ensembles"
    with pytest.raises(AccessError, match="may not save ensembles"):
        save_live_ensemble(aligned, [1, 1, 1], 0.5, out_dir=out, n_boot=0, actor=VIEWER)
    with pytest.raises(AccessError, match="may not save ensembles"):
        run_search(runs, method="mean", methods=("mean",), n_boot=0, out_dir=out,
                   runs_root=out.parent, actor=VIEWER)
    assert not out.exists() or not any(out.iterdir())
    path = save_live_ensemble(aligned, [1, 1, 1], 0.5, out_dir=out, n_boot=0, actor=TRAINER)
    assert json.loads((path / "config.json").read_text())["launched_by"] == "dashboard:tina"
    path, _ = run_search(runs, method="mean", methods=("mean",), n_boot=0, out_dir=out,
                         runs_root=out.parent, actor=TRAINER)
    assert json.loads((path / "config.json").read_text())["launched_by"] == "dashboard:tina"


def test_study_launch_refused_for_a_viewer_and_recorded(tmp_path, data, monkeypatch):
    from cnmc_core.study.plan import plan_study
    from cnmc_core.study.runner import cancel_study
    from cnmc_core.study.store import create_study, read_study

    plan = plan_study(["demo_scratch"], data=str(data), folds=3, seeds=1, epochs=1,
                      artifacts=tmp_path)
    with pytest.raises(AccessError, match="may not launch studies"):
        create_study(plan, tmp_path, actor=VIEWER)
    assert not (tmp_path / "studies").exists() or not any((tmp_path / "studies").iterdir())
    monkeypatch.setattr("cnmc_core.workspace.queue.launch_run", lambda run, env=None: 0)
    folder = create_study(plan, tmp_path, actor=TRAINER)
    assert read_study(folder)["launched_by"] == "dashboard:tina"
    runs = [tmp_path / "runs" / r["id"] for r in read_study(folder)["runs"]]
    assert {owner_of(r) for r in runs} == {"tina"}
    with pytest.raises(AccessError, match="it is tina's"):
        cancel_study(folder, actor=OTHER)
    assert cancel_study(folder, actor=TRAINER)["cancelled"] == len(runs)


def test_settings_refused_for_a_viewer(tmp_path, data):
    from cnmc_core.workspace.settings import (
        chosen_dataset,
        set_chosen_dataset,
        set_chosen_protocol,
    )

    with pytest.raises(AccessError, match="may not change the workspace's settings"):
        set_chosen_dataset(data, tmp_path, actor=VIEWER)
    with pytest.raises(AccessError):
        set_chosen_protocol("paper", tmp_path, actor=VIEWER)
    assert chosen_dataset(tmp_path) is None
    set_chosen_dataset(data, tmp_path, actor=TRAINER)
    assert chosen_dataset(tmp_path) == str(Path(data).resolve())


def test_mlflow_export_refused_for_a_viewer(tmp_path):
    from cnmc_core.interop.mlflow_export import export_to_mlflow

    with pytest.raises(AccessError, match="vera is a viewer and may not change"):
        export_to_mlflow(None, f"file://{tmp_path / 'mlruns'}", artifacts=tmp_path, actor=VIEWER)
    assert not (tmp_path / "mlruns").exists()


def test_cli_train_records_the_os_user(tmp_path, data, monkeypatch, capsys):
    from cnmc_core.cli.main import main

    monkeypatch.setattr("cnmc_core.workspace.queue.launch_run", lambda run, env=None: 0)
    assert main(["train", "--preset", "demo_scratch", "--data", str(data), "--epochs", "1",
                 "--artifacts", str(tmp_path), "--detach"]) == 0
    run = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((run / "config.json").read_text())["launched_by"] == \
        f"cli:{getpass.getuser()}"


GUARDED = {"start_run", "start_runs", "cancel_run", "delete_run", "save_live_ensemble",
           "save_ensemble", "run_search", "create_study", "cancel_study", "queue_demo_runs",
           "set_chosen_dataset", "set_chosen_protocol", "export_to_mlflow", "start_study",
           "start_demo_study", "active_run_card"}


def test_every_page_passes_the_signed_in_actor():
    """A page that forgot actor= would act as the server's OS user (an admin)."""
    files = [REPO / "app.py", *sorted((REPO / "pages").glob("*.py"))]
    calls = 0
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                no_action = any(k.arg == "cancel" and isinstance(k.value, ast.Constant)
                                and k.value.value is False for k in node.keywords)
                if name in GUARDED and not no_action:
                    calls += 1
                    assert "actor" in {k.arg for k in node.keywords}, \
                        f"{path.name}:{node.lineno} calls {name} without actor="
    assert calls >= 8
