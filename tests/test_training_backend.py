"""cnmc_core.training.backend: choosing the Keras backend of a run, the options that apply under
it, and how a worker gets it (the whole path under each backend: test_backends_end_to_end.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from cnmc_core.exceptions import ConfigError
from cnmc_core.training.backend import (
    check_backend,
    check_backend_options,
    prepare_runtime,
    resolve_backend,
    select_backend,
)
from cnmc_core.training.config import resolve_config

REPO = Path(__file__).resolve().parents[1]
HOME = keras.backend.backend()
OTHER = "jax" if HOME != "jax" else "torch"


def test_unknown_or_missing_backends_are_refused_with_the_fix(monkeypatch):
    with pytest.raises(ConfigError, match=r"The 'backend' parameter must be one of \{'tensorflow', 'jax', 'torch'\}\. Got "
                                          r"'theano' instead\. Set KERAS_BACKEND"):
        check_backend("theano")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the package\(s\) \['torch'\], which are not installed; "
                                          r"`pip install torch==2.13\.0`"):
        check_backend("torch")


def test_a_config_names_its_backend_and_a_bad_one_is_named_by_its_flag():
    config = resolve_config("demo_scratch", data="/d", backend="jax")
    assert config["backend"] == "jax" and resolve_backend(config) == "jax"
    assert resolve_config("demo_scratch", data="/d")["backend"] is None
    with pytest.raises(ConfigError, match=r"--backend: 'backend' must be one of \[None, 'tensorflow', "
                                          r"'jax', 'torch'\]; got 'mxnet'"):
        resolve_config("demo_scratch", data="/d", backend="mxnet")


def test_jit_compile_is_refused_under_torch_only():
    with pytest.raises(ConfigError, match="jit_compile \\(XLA\\) applies to the tensorflow and jax backends "
                                          "only.*Set jit_compile=false"):
        check_backend_options({"jit_compile": True}, "torch")
    for backend in ("tensorflow", "jax"):
        check_backend_options({"jit_compile": True}, backend)
    check_backend_options({"jit_compile": False}, "torch")


def test_a_process_keeps_the_backend_keras_was_imported_with():
    assert select_backend(HOME) == HOME
    with pytest.raises(ConfigError, match=f"already runs Keras on '{HOME}', and the run asks for backend "
                                          f"'{OTHER}'; train it detached"):
        select_backend(OTHER)


def test_the_backend_is_read_as_keras_reads_it_without_importing_keras(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    code = ("import sys; from cnmc_core.training.backend import configured_backend, select_backend; "
            "print(configured_backend()); select_backend('torch'); print(configured_backend()); "
            "print('keras' in sys.modules)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KERAS_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["jax", "torch", "False"]  # keras.json, then KERAS_BACKEND


def test_the_worker_is_started_with_the_runs_backend(tmp_path, monkeypatch):
    from conftest import make_kaggle_tree

    import cnmc_core.workspace.queue as queue
    from cnmc_core.training.launch import start_run
    from cnmc_core.workspace.fileio import read_json

    started = []

    def fake_spawn(argv, log, env=None):  # the worker's environment, and no process started
        started.append(env)
        return os.getpid()

    monkeypatch.setattr(queue, "spawn_detached", fake_spawn)
    data = make_kaggle_tree(tmp_path / "data", n_all=4, n_hem=4, per_subject=3)
    asked = start_run(resolve_config("demo_scratch", data=str(data), backend=OTHER), tmp_path / "art")
    default = start_run(resolve_config("demo_scratch", data=str(data)), tmp_path / "art")
    assert [env["KERAS_BACKEND"] for env in started] == [OTHER, HOME]
    # the run folder says which backend it will train on, before its worker starts
    assert read_json(asked / "config.json")["backend"] == OTHER
    assert read_json(default / "config.json")["backend"] == HOME
    with pytest.raises(ConfigError, match="jit_compile"):
        start_run(resolve_config("demo_scratch", data=str(data), backend="torch", sets=["jit_compile=true"]),
                  tmp_path / "art")
    assert len(list((tmp_path / "art" / "runs").iterdir())) == 2  # refused before a folder exists


def test_the_runtime_of_this_backend_says_what_applies():
    runtime = prepare_runtime({"jit_compile": False}, seed=0)
    assert runtime.backend == HOME and runtime.devices == []  # the CI machine has no GPU
    assert runtime.describe().startswith(f"backend {HOME} (") and "CPU (" in runtime.describe()
    if HOME == "tensorflow":
        assert runtime.strategy is not None and runtime.jit_compile is False and runtime.notes == []
