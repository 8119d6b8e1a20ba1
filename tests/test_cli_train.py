"""The training verbs of the CLI as a user types them: mistakes refused before any run folder
exists (with and without --detach), --artifacts and its deprecated alias --runs-dir on every
verb that has it, and the protocol named (leaky for the paper's) in what train prints; `runs`:
runs then ensembles, each oldest first, damaged last, with state, progress, val/test weighted F1
with CIs and the protocol as scores name it, every damage a reader must survive listed with its
reason, never a traceback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_kaggle_tree
from run_fixtures import DAMAGES

from cnmc_core.cli.main import build_parser, main
from cnmc_core.workspace.listing import forget_summaries

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    make_kaggle_tree(root, n_all=6, n_hem=6, per_subject=4)
    return root


SEED_RULE = r"The '--seed' parameter must be an int in the range \[0, 4294967295\]\. Got {} instead"
MISTAKES = [
    # the preset, the config and its values
    (["--preset", "nope"], r"Unknown preset 'nope'"),
    (["--set", "model=nonet"], r"Unknown model 'nonet'. Known models:"),
    (["--set", "batch_size=big"], r"'batch_size' must be int"),
    (["--seed", "-1"], SEED_RULE.format(-1) + r"\. Use a whole number such as 0, 1 or 42\."),
    (["--seed", str(2**32)], SEED_RULE.format(2**32)),
    (["--seed", str(2**40)], SEED_RULE.format(2**40)),
    (["--set", "stages.0.learning_rate=NaN"],
     r"The 'stages.0.learning_rate' parameter of --set must be a float in the range \(0, 1\]\. "
     r"Got nan instead"),
    (["--set", "stages.0.learning_rate=Infinity"], r"'stages.0.learning_rate' .* Got inf instead"),
    (["--epochs", "0"], r"The '--epochs' parameter must be an int in the range \[1, 100000\]"),
    # the model's arguments, checked before anything is built
    (["--set", "model_args.wings=2"], r"Unknown model_args \['wings'\]"),
    (["--set", "model_args.dropout=2"],
     r"The 'model_args.dropout' parameter of scratch_dd256 must be a float in the range \[0, 1\)\. "
     r"Got 2 instead"),
    (["--set", "model_args.head=evil"],
     r"The 'model_args.head' parameter of scratch_dd256 must be one of \{'d', 'dd', '2x'\}\. "
     r"Got 'evil' instead"),
    (["--set", "model_args.filters=[]"],
     r"The 'model_args.filters' parameter of scratch_dd256 must be a non-empty list of ints"),
    (["--set", "model_args.filters=[8,8]"], r"model_args.filters \[8, 8\] and model_args.pool_sizes"),
    (["--set", "model_args.dense_units=-4"], r"'model_args.dense_units' parameter .* Got -4 instead"),
    (["--image-size", "100000"],
     r"The 'image_size' parameter of scratch_dd256 must be an int in the range \[16, 600\]\. "
     r"Got 100000 instead\. Choose an input side from 16"),
    (["--preset", "demo_vgg16", "--set", "model_args.cut_layer=block9_pool"],
     r"'model_args.cut_layer' parameter of vgg16_block4 must be a layer of its vgg16 backbone"),
    # weights and data
    (["--preset", "demo_vgg16", "--set", "model_args.batch_norm=false", "--weights", "imagenet"],
     r"vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    (["NODATA"], r"No dataset: give --data ROOT"),
    (["--data", "EMPTY"], r"No C-NMC image found"),
    (["--data", "NOHEMVAL", "--split", "official"], r"The val split has only ALL images"),
]


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detach"])
@pytest.mark.parametrize("argv, message", MISTAKES, ids=[" ".join(map(str, a)) for a, _ in MISTAKES])
def test_mistakes_exit_2_before_any_run_folder(argv, message, detach, tiny_data, tmp_path, capsys,
                                               monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-empty"))  # no ImageNet file here
    (tmp_path / "empty").mkdir()
    # fold_2 of this tree has no HEM subject: the official protocol's val split lacks a class
    make_kaggle_tree(tmp_path / "nohemval", n_all=3, n_hem=2)
    # the tiny dataset unless the row names its own or none (NODATA); a later --preset wins
    args = ["train", "--preset", "demo_scratch"]
    if "--data" not in argv and "NODATA" not in argv:
        args += ["--data", str(tiny_data)]
    args += [a.replace("EMPTY", str(tmp_path / "empty")).replace("NOHEMVAL", str(tmp_path / "nohemval"))
             for a in argv if a != "NODATA"]
    art = tmp_path / "art"
    rc = main([*args, "--artifacts", str(art), *(["--detach"] if detach else [])])
    captured = capsys.readouterr()
    assert rc == 2, captured
    assert captured.err.startswith("error: ") and re.search(message, captured.err), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (art / "runs").exists() or not list((art / "runs").iterdir())


# Every verb that reads or writes the workspace, with its required arguments.
VERBS = [
    ["train", "--preset", "demo_scratch"],
    ["runs"],
    ["cancel", "RUN"],
    ["evaluate", "RUN", "--data", "D"],
    ["ensemble", "A", "B"],
    ["errors", "A", "B"],
    ["explain", "RUN", "IMG", "--out", "x.png"],
]


@pytest.mark.parametrize("verb", VERBS, ids=[v[0] for v in VERBS])
def test_every_verb_takes_artifacts_and_the_old_name_with_a_note(verb, capsys):
    parser = build_parser()
    new = parser.parse_args([*verb, "--artifacts", "/w"])
    assert capsys.readouterr().err == ""
    old = parser.parse_args([*verb, "--runs-dir", "/w"])
    err = capsys.readouterr().err
    assert err == "note: --runs-dir is deprecated; use --artifacts /w (the same folder).\n"
    assert vars(old) == vars(new)
    assert [v for k, v in vars(new).items() if v == "/w"] == ["/w"]  # one attribute holds it
    sub = parser._subparsers._group_actions[0].choices[verb[0]]
    usage = sub.format_help()
    assert "--artifacts DIR" in usage and "--runs-dir" not in usage


def test_runs_with_the_old_flag_still_lists(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "no runs yet" in captured.out and "--runs-dir is deprecated" in captured.err


def test_train_names_the_leaky_protocol(tiny_data, tmp_path, capsys):
    rc = main(["train", "--preset", "demo_scratch", "--data", str(tiny_data), "--epochs", "1",
               "--split", "paper", "--artifacts", str(tmp_path / "art"), "--set", "batch_size=8"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0, out
    assert "protocol paper (leaky: split by image)" in out[0]
    assert any(line.startswith("data: ") and "protocol paper (leaky: split by image)" in line
               for line in out)
    assert out[-2].startswith("val weighted F1 ") and \
        out[-2].endswith("; protocol paper (leaky: split by image)")
    assert not [line for line in out if "(paper protocol)" in line]
    log = (tmp_path / "art" / "runs" / out[-1].split("/")[-1] / "log.txt").read_text()
    assert "protocol paper (leaky: split by image)" in log


# --------------------------------------------------------------------------- runs
def copy_run(source: Path, root: Path, run_id: str, **config) -> Path:
    """A copy of a finished run under a new id (its config rewritten with ``config``)."""
    target = root / "runs" / run_id
    shutil.copytree(source, target)
    data = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**data, "run_id": run_id, **config}))
    return target


@pytest.fixture
def runs_ws(ws_copy, tmp_path):
    """A workspace with copies of one completed run, ``20260101-00000k-...`` oldest first."""
    forget_summaries()
    return tmp_path / "artifacts", ws_copy["runs"][0]


@pytest.mark.parametrize("name, damage, words", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_runs_shows_a_damaged_run_with_its_reason(runs_ws, capsys, name, damage, words):
    root, source = runs_ws
    good = copy_run(source, root, "20260101-000001-good", created=1.0)
    bad = copy_run(source, root, "20260101-000000-bad", created=0.0)
    damage(bad)
    assert main(["runs", "--artifacts", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [[good.name, "completed"], [bad.name, "damaged"]]
    assert "error: " in lines[1] and all(w in lines[1] for w in words), lines[1]
    assert main(["runs", "--artifacts", str(root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in rows] == ["completed", "damaged"]
    assert all(w in rows[1]["error"] for w in words)
    assert rows[1]["path"] == str(bad)


def test_runs_in_a_fresh_process_lists_every_damage_without_a_traceback(runs_ws):
    root, source = runs_ws
    copy_run(source, root, "20260101-000009-good")
    for k, (name, damage, _) in enumerate(DAMAGES):
        damage(copy_run(source, root, f"20260101-00000{k}-{name}"))
    for extra in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "-m", "cnmc_core", "runs", "--artifacts", str(root),
                               *extra], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["state"] for r in rows] == ["completed"] + ["damaged"] * len(DAMAGES)
    reasons = {r["run_id"].split("-", 2)[-1]: r["error"] for r in rows[1:]}
    for name, _, words in DAMAGES:
        assert all(w in reasons[name] for w in words), (name, reasons[name])


def test_runs_prints_scores_with_cis_and_the_leaky_protocol(runs_ws, capsys):
    root, source = runs_ws
    copy_run(source, root, "20260101-000001-subject", created=1.0)
    copy_run(source, root, "20260101-000002-paper", created=2.0, split_protocol="paper")
    assert main(["runs", "--artifacts", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    metrics = json.loads((source / "metrics.json").read_text())
    val, test = metrics["val"], metrics["test"]
    ci = test["ci"]["weighted_f1"]
    assert f"test F1 {test['weighted_f1']:.4f} [{ci['low']:.3f}, {ci['high']:.3f}]" in lines[0]
    assert f"val F1 {val['weighted_f1']:.4f} [" in lines[0]
    assert " subject " in lines[0] and "paper (leaky: split by image)" in lines[1]
    assert main(["runs", "--artifacts", str(root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["protocol"], r["protocol_label"]) for r in rows] == [
        ("subject", "subject"), ("paper", "paper (leaky: split by image)")]


def test_runs_of_an_empty_or_missing_workspace(tmp_path, capsys):
    assert main(["runs", "--artifacts", str(tmp_path / "none")]) == 0
    assert "no runs yet" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()
