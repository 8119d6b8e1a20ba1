"""cnmc_core.workspace.paths: the artifacts folder resolved once; environment mistakes ($CNMC_ARTIFACTS
a file, a read-only workspace) are clear errors from every verb, and reading needs no write."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_kaggle_tree

from cnmc_core.exceptions import ConfigError
from cnmc_core.workspace.paths import (
    artifacts_dir,
    artifacts_root,
    demo_data_dir,
    runs_dir,
    workspace_dir,
)

REPO = Path(__file__).resolve().parents[1]


def test_the_root_comes_from_the_argument_then_the_environment_then_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("CNMC_ARTIFACTS", raising=False)
    assert artifacts_root() == Path("artifacts")
    monkeypatch.setenv("CNMC_ARTIFACTS", str(tmp_path / "env"))
    assert artifacts_root() == tmp_path / "env"
    assert artifacts_root(tmp_path / "given") == tmp_path / "given"
    monkeypatch.setenv("CNMC_ARTIFACTS", "")  # set but empty: the default
    assert artifacts_root() == Path("artifacts")


def test_resolving_and_reading_create_nothing_writing_creates_what_it_needs(tmp_path):
    root = tmp_path / "a" / "b"
    assert artifacts_root(root) == root and runs_dir(root, create=False) == root / "runs"
    assert demo_data_dir(root) == root / "demo-data" and not (tmp_path / "a").exists()
    assert runs_dir(root).is_dir() and workspace_dir("manifests", root).is_dir()
    assert artifacts_dir(root) == root


@pytest.mark.parametrize("where", ["itself", "a parent"])
def test_an_artifacts_folder_that_is_a_file_is_a_clear_error(tmp_path, where):
    (tmp_path / "afile").write_text("x")
    root = tmp_path / "afile" if where == "itself" else tmp_path / "afile" / "artifacts"
    message = "is a file, not a folder" if where == "itself" else "is below .*afile, which is a file"
    with pytest.raises(ConfigError, match=rf"The artifacts folder .*{message}: point "
                                          r"\$CNMC_ARTIFACTS \(or --runs-dir / --artifacts\) at a folder"):
        artifacts_root(root)
    with pytest.raises(ConfigError):
        runs_dir(root)


def _cli(*args, env: dict, cwd: Path, read_only: bool = False) -> subprocess.CompletedProcess:
    """``python -m cnmc_core ARGS`` in a fresh process; ``read_only``: as a user for whom the
    workspace's permission bits hold (root drops its right to override them)."""
    prefix = []
    if read_only and os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: permission bits cannot be enforced")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    return subprocess.run([*prefix, sys.executable, "-m", "cnmc_core", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env},
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_kaggle_tree(tmp_path_factory.mktemp("tiny"), n_all=2, n_hem=2, per_subject=2)


@pytest.mark.parametrize("verb", [["runs"], ["runs", "--json"], ["scan", "DATA"],
                                  ["preprocess", "DATA", "--size", "32", "--jobs", "1"],
                                  ["ensemble", "A", "B"]])
def test_cnmc_artifacts_pointing_at_a_file(tmp_path, tiny, verb):
    (tmp_path / "afile").write_text("not a folder")
    args = [str(tiny) if a == "DATA" else a for a in verb]
    proc = _cli(*args, env={"CNMC_ARTIFACTS": str(tmp_path / "afile")}, cwd=tmp_path)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr and "\nverifying" not in proc.stderr  # refused first
    assert proc.stderr.startswith("error: The artifacts folder")
    assert f"{tmp_path / 'afile'} ($CNMC_ARTIFACTS) is a file, not a folder" in proc.stderr
    assert (tmp_path / "afile").read_text() == "not a folder"


@pytest.fixture
def read_only_ws(ws_copy, tmp_path):
    """An empty read-only artifacts folder and a read-only copy of a workspace with runs."""
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    shutil.copytree(ws_copy["root"], full, ignore=shutil.ignore_patterns("cache", "summary.json"))
    folders = [empty, *(p for p in full.rglob("*") if p.is_dir()), full]
    for folder in folders:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    yield empty, full
    for folder in folders:
        folder.chmod(stat.S_IRWXU)


def test_a_read_only_workspace_is_listed_and_writing_to_it_is_a_clear_error(read_only_ws, tiny,
                                                                            tmp_path):
    empty, full = read_only_ws
    proc = _cli("runs", env={"CNMC_ARTIFACTS": str(empty)}, cwd=tmp_path, read_only=True)
    assert proc.returncode == 0 and "no runs yet" in proc.stdout, proc
    proc = _cli("runs", "--runs-dir", str(full), cwd=tmp_path, env={}, read_only=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc
    states = [line.split()[1] for line in proc.stdout.splitlines()]
    assert states == ["completed"] * 3 + ["failed", "completed"], proc.stdout
    assert not list(full.rglob("summary.json"))  # summaries rebuilt in memory, nothing written
    for verb, folder in ((["scan", str(tiny)], "manifests"),
                         (["preprocess", str(tiny), "--size", "32", "--jobs", "1"], "cache")):
        proc = _cli(*verb, env={"CNMC_ARTIFACTS": str(empty)}, cwd=tmp_path, read_only=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc
        assert f"error: Cannot create {folder}/ in the artifacts folder {empty / folder}: " \
               "Permission denied" in proc.stderr
        assert f"make {empty} writable, or point $CNMC_ARTIFACTS" in proc.stderr
    assert not any(empty.iterdir())
