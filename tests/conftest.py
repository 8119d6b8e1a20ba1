"""Shared fixtures: paths to the real samples and small image trees built in tmp folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REAL_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "real-samples"


@pytest.fixture
def real_samples() -> Path:
    """../shared/real-samples, or a skip with the reason when a fresh clone lacks it."""
    if not (REAL_SAMPLES / "all").is_dir():
        pytest.skip(f"real C-NMC samples not found at {REAL_SAMPLES} (they live beside the project, not in it)")
    return REAL_SAMPLES


def run_unprivileged(code: str, *args: str, timeout: float = 120) -> str:
    """Run ``python -c code args...`` where file permissions hold, and return its stdout.

    As root, mode 000 does not stop a read (CAP_DAC_OVERRIDE): the child then runs under
    ``setpriv --bounding-set -all --inh-caps -all``, still uid 0 but without any capability, so
    the kernel checks permissions as for anyone. As another user it runs as is. Skips, with the
    reason, when a folder cannot be made unreadable here.
    """
    import shutil
    import subprocess
    import sys

    command = [sys.executable, "-c", code, *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop the capability that reads mode-000 folders")
        command = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", *command]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode == 3:
        pytest.skip(f"a mode-000 folder stays readable here: {proc.stdout.strip()}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


#: Put first in the code given to :func:`run_unprivileged`: exits 3 if ``sys.argv[1]`` (a folder
#: made mode 000) can still be listed, so a test never passes without the error it needs.
CHECK_LOCKED = """
import os, sys
try:
    os.listdir(sys.argv[1])
except PermissionError:
    pass
else:
    print("listed", sys.argv[1]); sys.exit(3)
"""


def cell_image(size: int = 96, radius: int = 30, color=(70, 30, 80), seed: int = 0) -> np.ndarray:
    """A purple disc with noise on pure black: the shape of a C-NMC image, RGB uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), np.uint8)
    cy, cx = size // 2 + int(rng.integers(-5, 6)), size // 2 + int(rng.integers(-5, 6))
    cv2.circle(image, (cx, cy), radius, color, -1)
    noise = rng.integers(0, 20, size=image.shape, dtype=np.uint8)
    return np.where(image > 0, image + noise, 0).astype(np.uint8)


def write_image(path: Path, image: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)
    assert ok, path
    return path


def make_kaggle_tree(root: Path, n_all: int = 4, n_hem: int = 3, per_subject: int = 2) -> Path:
    """A tiny Kaggle-mirror tree: folds by subject, a renamed prelim set with CSV, a final set."""
    base = root / "C-NMC_Leukemia"
    k = 0
    for i in range(n_all):
        for j in range(per_subject):
            write_image(base / "training_data" / f"fold_{i % 3}" / "all" / f"UID_{i + 1}_{j + 1}_1_all.bmp",
                        cell_image(radius=34, seed=k)); k += 1
    for i in range(n_hem):
        for j in range(per_subject):
            write_image(base / "training_data" / f"fold_{i % 3}" / "hem" / f"UID_H{i + 1}_{j + 1}_1_hem.bmp",
                        cell_image(radius=24, seed=k)); k += 1
    prelim = base / "validation_data" / "C-NMC_test_prelim_phase_data"
    rows = ["Patient_ID,new_names,labels"]
    for n, (orig, y) in enumerate([("UID_50_1_1_all.bmp", 1), ("UID_H50_1_1_hem.bmp", 0),
                                   ("UID_51_2_1_all.bmp", 1)], start=1):
        write_image(prelim / f"{n}.bmp", cell_image(seed=100 + n))
        rows.append(f"{orig},{n}.bmp,{y}")
    (base / "validation_data" / "C-NMC_test_prelim_phase_data_labels.csv").write_text("\n".join(rows) + "\n")
    final = base / "testing_data" / "C-NMC_test_final_phase_data"
    for n in range(1, 3):
        write_image(final / f"{n}.bmp", cell_image(seed=200 + n))
    return root


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """A tiny dataset, 3 completed runs and a failed one (see workspace_fixture.py)."""
    from workspace_fixture import build_workspace

    return build_workspace(tmp_path_factory.mktemp("workspace"))


@pytest.fixture(scope="session")
def synth_workspace(tmp_path_factory):
    """A tiny synthetic dataset (made by ``synth``) and one run trained on it (see
    workspace_fixture.py)."""
    from workspace_fixture import build_synth_workspace

    return build_synth_workspace(tmp_path_factory.mktemp("synth_workspace"))


@pytest.fixture
def three_runs(tmp_path):
    """Three runs A, B, C of decreasing skill on the same images, rows shuffled."""
    from run_fixtures import make_truth, model_probs, write_run

    truth = make_truth()
    runs = tmp_path / "artifacts" / "runs"
    paths = [write_run(runs, name, truth, model_probs(truth, skill, k), shuffle_seed=k)
             for k, (name, skill) in enumerate([("A", 0.5), ("B", 0.4), ("C", 0.3)])]
    return truth, paths


@pytest.fixture(scope="module")
def ws_copy(workspace, tmp_path_factory):
    """A private copy of the session workspace plus a saved mean ensemble of its 3 runs."""
    import shutil

    from cnmc_core.ensemble.search import run_search

    root = tmp_path_factory.mktemp("compare") / "artifacts"
    shutil.copytree(workspace["artifacts"], root)
    runs = sorted(p for p in (root / "runs").iterdir() if "fixture_" in p.name)
    ens, _ = run_search(runs, method="mean", methods=("mean",), n_boot=20,
                            out_dir=root / "ensembles", runs_root=root)
    return {"root": root, "runs": runs, "ensemble": ens,
            "failed": root / "runs" / workspace["failed"].name, "data": workspace["data"]}


@pytest.fixture
def member_store(tmp_path):
    """Runs a and b scored on the same images, c on others, a failed run and a damaged one."""
    from run_fixtures import write_member_run

    root = tmp_path / "artifacts"
    a = write_member_run(root, "20260101-000001-demo-aaaa", ["x1", "x2", "x3", "x4"], data="/data/a")
    b = write_member_run(root, "20260101-000002-demo-bbbb", ["x1", "x2", "x3", "x4"])
    c = write_member_run(root, "20260101-000003-demo-cccc", ["x1", "x2", "x3", "x9"])
    write_member_run(root, "20260101-000004-demo-dddd", [], state="failed")
    bad = root / "runs" / "20260101-000005-damaged"
    bad.mkdir()
    (bad / "config.json").write_text("{")
    (bad / "status.json").write_text("{not json")
    return {"root": root, "a": a, "b": b, "c": c}


@pytest.fixture(scope="module")
def aligned():
    """Aligned predictions of three members (see run_fixtures.make_aligned)."""
    from run_fixtures import make_aligned

    return make_aligned()


@pytest.fixture(scope="module")
def report(aligned):
    """The error analysis of ``aligned`` on its test split."""
    from cnmc_core.analysis.errors import analyse_errors

    return analyse_errors(aligned, "test")
