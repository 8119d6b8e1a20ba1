"""Run folders written by hand, as the training engine writes them, for ensemble and analysis
tests: a truth table of val/test images with subjects, and members of chosen skill."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cnmc_core.ensemble.align import AlignedPredictions, SplitData


def make_truth(n_val: int = 120, n_test: int = 150, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("val", n_val), ("test", n_test)):
        for i in range(n):
            subject = int(rng.integers(0, 12))
            rows.append({"image_id": f"UID_{subject}_{split}{i}_1.bmp", "split": split,
                         "y": int(subject < 7), "subject": str(subject)})
    return pd.DataFrame(rows)


def write_run(root: Path, run_id: str, truth: pd.DataFrame, prob, *, state="completed",
              protocol="subject", fingerprint="fp-1", shuffle_seed=None, drop=()) -> Path:
    """A run folder as the training engine writes it."""
    path = root / run_id
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({
        "run_id": run_id, "kind": "run", "model": "cnn", "preset": "demo",
        "split_protocol": protocol, "seed": 0, "dataset_fingerprint": fingerprint,
        "image_size": 64}))
    (path / "status.json").write_text(json.dumps({"state": state}))
    frame = truth.assign(prob=np.asarray(prob, float))
    frame = frame.drop(index=list(drop))
    if shuffle_seed is not None:
        frame = frame.sample(frac=1.0, random_state=shuffle_seed)
    frame[["image_id", "split", "y", "prob", "subject"]].to_csv(path / "predictions.csv",
                                                                index=False)
    return path


def model_probs(truth: pd.DataFrame, skill: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random(len(truth))
    return np.clip(skill * truth["y"].to_numpy() + (1 - skill) * noise + rng.normal(0, .1, len(truth))
                   * 0.3, 0, 1)


def make_aligned(n: int = 200, m: int = 3, seed: int = 0) -> AlignedPredictions:
    """Aligned predictions of ``m`` members of decreasing skill on ``n`` val and ``n`` test images."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split in ("val", "test"):
        y = (rng.random(n) < 0.6).astype(np.int8)
        noise = rng.normal(0, 0.3, (n, m)) * np.linspace(1.0, 2.5, m)
        probs = np.clip(0.5 + (y[:, None] - 0.5) * 0.6 + noise, 0, 1)
        splits[split] = SplitData(np.array([f"{split}{i}.bmp" for i in range(n)]), y,
                                  np.array([f"S{i % 20}" for i in range(n)]), probs)
    names = [f"run{j}" for j in range(m)]
    return AlignedPredictions(names, [Path(x) for x in names], ["run"] * m, [0.5] * m,
                              "subject", "fp", splits)


def write_member_run(root: Path, run_id: str, ids, *, state="completed", protocol="subject",
                     model=True, data=None) -> Path:
    """``root/runs/<run_id>`` as the training engine leaves it: config, status, and when
    completed predictions (val and test on ``ids``), metrics and a stand-in model file."""
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


def _replace(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert old in data, (path, old)
    path.write_bytes(data.replace(old, new, 1))


#: Damages a reader must survive (issue 12 item 21), written into a copy of a completed run:
#: ``(name, damage(run_dir), words the reason must contain)``. The reason names the file.
DAMAGES = [
    ("config-is-an-array", lambda r: (r / "config.json").write_text("[]"),
     ["config.json", "holds a JSON array, not a JSON object"]),
    ("metrics-is-an-array", lambda r: (r / "metrics.json").write_text("[1, 2]"),
     ["metrics.json", "holds a JSON array, not a JSON object"]),
    ("config-not-utf8", lambda r: _replace(r / "config.json", b'"model": "', b'"model": "\xff\xfe'),
     ["config.json", "is not UTF-8 text (byte 0xff"]),
    ("status-not-utf8", lambda r: _replace(r / "status.json", b'"message": "', b'"message": "\xff'),
     ["status.json", "is not UTF-8 text (byte 0xff"]),
    ("predictions-not-utf8", lambda r: _replace(r / "predictions.csv", b"UID_", b"\xff\xfeUID_"),
     ["predictions.csv", "cannot be read as CSV", "utf-8"]),
    ("history-not-utf8", lambda r: _replace(r / "history.jsonl", b'"stage": "', b'"stage": "\xff'),
     ["history.jsonl", "is not UTF-8 text (byte 0xff"]),
    ("heartbeat-not-a-number", lambda r: (r / "status.json").write_text(json.dumps(
        {**json.loads((r / "status.json").read_text()), "heartbeat": "x"})),
     ["status.json", "heartbeat must be a number or null; got 'x'"]),
    ("config-deleted", lambda r: (r / "config.json").unlink(), ["config.json is missing"]),
]


def tensorboard_scalars(folder, tag="epoch_loss") -> dict[int, float]:
    """``{step: value}`` of one scalar in a folder of event files, read by TensorBoard's own
    reader (tf.summary v2 writes scalars as tensors)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}


def write_study(root: Path, presets=("demo_a", "demo_b"), k: int = 3, n_subjects: int = 12,
                per_subject: int = 4, skills=(0.6, 0.4), study_id="study-20260101-000000-ab-0000"
                ) -> Path:
    """``root/studies/<study_id>`` as a completed study leaves it, with its runs in
    ``root/runs``: ``k`` subject folds (subject ``s`` in fold ``s % k``; subjects below 7/12 of
    them ALL), fold ``i`` the test and fold ``i + 1`` the val of run (preset, i), members of the
    given skills. Every subject is the test subject of exactly one run per preset."""
    subjects = [str(s) for s in range(n_subjects)]
    fold_of = {s: int(s) % k for s in subjects}
    images = [(f"UID_{s}_{j}_1.bmp", s, int(int(s) < n_subjects * 7 // 12))
              for s in subjects for j in range(per_subject)]
    study_dir = root / "studies" / study_id
    study_dir.mkdir(parents=True)
    entries = []
    for p, (preset, skill) in enumerate(zip(presets, skills)):
        for fold in range(k):
            run_id = f"20260101-0000{p}{fold}-{preset}-{p}{fold:03d}"
            rows = []
            for split, f in (("test", fold), ("val", (fold + 1) % k)):
                part = [(i, s, y) for i, s, y in images if fold_of[s] == f]
                rng = np.random.default_rng(100 * p + 10 * fold + (split == "val"))
                y = np.array([y for _, _, y in part], float)
                prob = np.clip(skill * y + (1 - skill) * rng.random(len(part)), 0, 1)
                rows += [{"image_id": i, "split": split, "y": int(t), "prob": float(q),
                          "subject": s} for (i, s, _), t, q in zip(part, y, prob)]
            path = root / "runs" / run_id
            path.mkdir(parents=True)
            (path / "config.json").write_text(json.dumps({
                "run_id": run_id, "kind": "run", "name": preset, "preset": preset, "model": "cnn",
                "split_protocol": "subject-kfold", "kfold": {"k": k, "fold": fold}, "seed": 0,
                "dataset_fingerprint": "fp-study", "image_size": 64, "created": 1.0 + fold,
                "study": {"id": study_id, "preset": preset, "fold": fold, "seed": 0}}))
            (path / "status.json").write_text(json.dumps({"state": "completed", "epoch": 2,
                                                          "epochs": 2}))
            pd.DataFrame(rows).to_csv(path / "predictions.csv", index=False)
            entries.append({"id": run_id, "path": f"runs/{run_id}", "preset": preset,
                            "fold": fold, "seed": 0})
    (study_dir / "study.json").write_text(json.dumps({
        "study_id": study_id, "kind": "study", "created": 1.0, "presets": list(presets),
        "folds": k, "seeds": [0], "protocol": "subject-kfold", "backend": "local",
        "runs": entries}))
    (study_dir / "status.json").write_text(json.dumps({"state": "completed", "kind": "study",
                                                       "done": len(entries),
                                                       "total": len(entries)}))
    return study_dir


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2) -> None:
    """Return once ``predicate()`` is true; fail the test after ``timeout`` seconds, naming
    ``what`` was awaited."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def auth_workspace(base: Path, users: dict[str, tuple[str, str]], owners: list[str]) -> dict:
    """A workspace for the sign-in tests: a tiny Kaggle-layout dataset chosen, ``users``
    (name -> (role, password)) in its users file, and one queued 1-epoch ``demo_scratch`` run
    launched by each of ``owners`` from the dashboard (named ``<owner>_run``).

    Returns ``{"root": artifacts folder, "data": dataset, "runs": {owner: run folder}}``."""
    from conftest import make_kaggle_tree

    from cnmc_core.auth.users import add_user
    from cnmc_core.training.config import resolve_config
    from cnmc_core.workspace.layout import create_run
    from cnmc_core.workspace.settings import set_chosen_dataset

    data = make_kaggle_tree(base / "data", n_all=8, n_hem=7, per_subject=4)
    root = base / "artifacts"
    set_chosen_dataset(data, root)
    for name, (role, password) in users.items():
        add_user(name, role, password, root)
    runs = {}
    for owner in owners:
        config = resolve_config("demo_scratch", data=str(data), epochs=1)
        config.update(launched_by=f"dashboard:{owner}", name=f"{owner}_run")
        runs[owner] = create_run(config, root)
    return {"root": root, "data": data, "runs": runs}
