"""Tests of the synthetic C-NMC stand-in (:mod:`cnmc_core.data.synth`, CLI verb ``synth``).

Layout and names, the labels CSV, unseen subjects, determinism, the class ratio, argument errors,
the CLI, realism against the real samples in ``../shared/real-samples`` (skipped with a reason
when that folder is absent), the direction of the class signals and the subject leak.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cnmc_core.cli.main import build_parser, main
from cnmc_core.data.synth import (
    LABELS_CSV_NAME,
    ROOT_NAME,
    generate_dataset,
    plan_dataset,
)
from cnmc_core.data.synth_cells import DEFAULT_SIZE, make_subject_profile, render_cell
from cnmc_core.exceptions import ConfigError

REAL = Path(__file__).resolve().parents[2] / "shared" / "real-samples"
NAME_RE = re.compile(r"^UID_(H?[0-9]+)_([0-9]+)_([0-9]+)_(all|hem)\.(png|bmp)$")
FOLDS = ("fold_0", "fold_1", "fold_2")


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"cannot read {path}"
    return img[:, :, ::-1]


def _tree_hashes(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small dataset: 6 ALL + 3 HEM training subjects, 5 cells each, 64 px."""
    out = tmp_path_factory.mktemp("synth") / "ds"
    calls = []
    summary = generate_dataset(out, subjects_all=6, subjects_hem=3, cells_per_subject=5, size=64,
                               seed=3, prelim_subjects=(2, 1), final_subjects=(1, 1), n_jobs=1,
                               progress=lambda d, t: calls.append((d, t)))
    return out, summary, calls


# --------------------------------------------------------------------------------------------
# Layout, names, labels CSV, unseen subjects
# --------------------------------------------------------------------------------------------


def test_layout_names_and_folds(small):
    out, summary, _ = small
    root = out / ROOT_NAME
    assert summary.root == root
    fold_of: dict[str, str] = {}
    n = 0
    for fold in FOLDS:
        for label in ("all", "hem"):
            folder = root / "training_data" / fold / label
            assert folder.is_dir()
            files = sorted(folder.iterdir())
            assert len(files) == summary.counts[fold][label]
            for f in files:
                m = NAME_RE.match(f.name)
                assert m, f"bad file name {f.name}"
                subject = f.name.split("_")[1]  # the subject is the 2nd token
                assert subject == m.group(1)
                assert m.group(4) == label, "label suffix must match the folder"
                assert subject.startswith("H") == (label == "hem"), "H marks healthy subjects"
                assert fold_of.setdefault(subject, fold) == fold, f"subject {subject} in two folds"
                n += 1
    assert n == sum(summary.counts[f][c] for f in FOLDS for c in ("all", "hem"))
    assert len({s for s in fold_of if not s.startswith("H")}) == 6
    assert len({s for s in fold_of if s.startswith("H")}) == 3
    # every fold gets subjects of both classes here (6 and 3 dealt over 3 folds)
    for fold in FOLDS:
        assert summary.counts[fold]["all"] > 0 and summary.counts[fold]["hem"] > 0
    assert summary.info_path.is_file() and summary.info_path.name.startswith(".")


def test_images_are_png_one_cell_on_black(small):
    # PNG by default since issue 14 (was 24-bit BMP; --format bmp keeps that: test_data_synth_realism.py)
    out, summary, _ = small
    files = sorted((out / ROOT_NAME).rglob("*.png"))
    assert len(files) == summary.n_images
    for f in files:
        data = f.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{f.name} is not a PNG"
        assert data[24] == 8 and data[25] == 2, "8-bit RGB PNG (no alpha, no palette)"
        img = _read_rgb(f)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        assert not border.any(), f"{f.name}: the cell touches the border"
        gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        mask = (gray >= 1).astype(np.uint8)
        n_comp, _ = cv2.connectedComponents(mask)
        assert n_comp == 2, f"{f.name}: expected one cell, found {n_comp - 1} components"
        assert 0.05 < mask.mean() < 0.6
        # purple: red and blue above green, on average
        mean = img[mask > 0].mean(axis=0)
        assert mean[0] > mean[1] and mean[2] > mean[1]


def test_progress_callback(small):
    _, summary, calls = small
    assert calls[0] == (0, summary.n_images)
    assert calls[-1] == (summary.n_images, summary.n_images)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_prelim_labels_csv(small):
    out, summary, _ = small
    csv = out / ROOT_NAME / "validation_data" / LABELS_CSV_NAME
    assert summary.labels_csv == csv
    header = csv.read_text(encoding="utf-8").splitlines()[0]
    assert header == "Patient_ID,new_names,labels"
    real_csv = REAL / LABELS_CSV_NAME
    if real_csv.is_file():  # same header as the real file, byte for byte
        assert header == real_csv.read_text(encoding="utf-8").splitlines()[0]
    df = pd.read_csv(csv)
    n = summary.counts["prelim"]["all"] + summary.counts["prelim"]["hem"]
    assert len(df) == n
    assert list(df["new_names"]) == [f"{i}.png" for i in range(1, n + 1)]
    assert set(df["labels"]) == {0, 1}
    for row in df.itertuples(index=False):
        m = NAME_RE.match(row.Patient_ID)
        assert m, row.Patient_ID
        assert row.labels == (1 if m.group(4) == "all" else 0)
    folder = out / ROOT_NAME / "validation_data" / "C-NMC_test_prelim_phase_data"
    assert sorted(p.name for p in folder.iterdir()) == sorted(df["new_names"])
    assert df["Patient_ID"].is_unique


def test_prelim_and_final_subjects_unseen(small):
    out, summary, _ = small
    train = {s for f in FOLDS for c in ("all", "hem") for s in summary.subjects[f][c]}
    on_disk = {p.name.split("_")[1] for p in (out / ROOT_NAME / "training_data").rglob("*.png")}
    assert on_disk == train
    prelim = {r.split("_")[1] for r in pd.read_csv(summary.labels_csv)["Patient_ID"]}
    assert prelim == set(summary.subjects["prelim"]["all"] + summary.subjects["prelim"]["hem"])
    final = set(summary.subjects["final"]["all"] + summary.subjects["final"]["hem"])
    assert prelim and final
    assert not prelim & train and not final & train and not prelim & final
    final_dir = out / ROOT_NAME / "testing_data" / "C-NMC_test_final_phase_data"
    n_final = summary.counts["final"]["all"] + summary.counts["final"]["hem"]
    assert sorted(p.name for p in final_dir.iterdir()) == sorted(f"{i}.png" for i in range(1, n_final + 1))
    assert not list(final_dir.parent.glob("*.csv")), "the final set is unlabelled"


# --------------------------------------------------------------------------------------------
# Determinism, counts and defaults
# --------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_any_workers(tmp_path):
    kw = dict(subjects_all=3, subjects_hem=2, cells_per_subject=3, size=48, prelim_subjects=(1, 1),
              final_subjects=(1, 1))
    generate_dataset(tmp_path / "a", seed=11, n_jobs=1, **kw)
    generate_dataset(tmp_path / "b", seed=11, n_jobs=2, **kw)  # worker processes, any order
    generate_dataset(tmp_path / "c", seed=12, n_jobs=1, **kw)
    a, b, c = (_tree_hashes(tmp_path / x) for x in "abc")
    assert len(a) > 10 and a == b
    images_a = {k: v for k, v in a.items() if k.endswith(".png")}
    images_c = {k: v for k, v in c.items() if k.endswith(".png")}
    assert set(images_a.values()).isdisjoint(images_c.values()), "a different seed must change the images"


def test_default_counts_and_ratio():
    plan = plan_dataset()
    totals = plan.class_totals()
    assert 1500 <= plan.n_images <= 2500
    assert totals["all"] / totals["hem"] == pytest.approx(2.1, abs=0.1)
    for c in ("all", "hem"):
        n_train = sum(len(plan.subjects[f][c]) for f in FOLDS)
        assert n_train >= 10, "enough subjects per class for a subject-disjoint 60/20/20 split"
        assert 1 <= len(plan.subjects["prelim"][c]) < n_train / 3
        assert 1 <= len(plan.subjects["final"][c]) < n_train / 3
    # the CLI has the same defaults
    args = build_parser().parse_args(["synth", "somewhere"])
    assert plan_dataset(subjects_all=args.subjects_all, subjects_hem=args.subjects_hem,
                        cells_per_subject=args.cells_per_subject, size=args.size,
                        seed=args.seed).counts == plan.counts
    assert args.size == DEFAULT_SIZE == 450


def test_class_totals_follow_subject_counts(small):
    _, summary, _ = small
    train = {c: sum(summary.counts[f][c] for f in FOLDS) for c in ("all", "hem")}
    assert train == {"all": 6 * 5, "hem": 3 * 5}
    assert summary.counts["prelim"] == {"all": 2 * 5, "hem": 1 * 5}
    plan = plan_dataset(subjects_all=21, subjects_hem=10, seed=3, prelim_subjects=(0, 0),
                        final_subjects=(0, 0))
    assert plan.class_totals()["all"] / plan.class_totals()["hem"] == pytest.approx(2.1)


def test_render_cell_scales_with_size():
    prof = make_subject_profile(np.random.default_rng(0), "7", "all")
    areas = {}
    for size in (450, 225):
        img = render_cell(np.random.default_rng(5), "all", prof, size)
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        areas[size] = int((cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) >= 1).sum())
    assert areas[450] / areas[225] == pytest.approx(4.0, rel=0.06)


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(subjects_all=0), ["subjects_all", "--subjects-all", "positive integer"]),
        (dict(subjects_hem=-2), ["subjects_hem", "--subjects-hem", "positive integer"]),
        (dict(cells_per_subject=0), ["cells_per_subject", "--cells-per-subject", "positive integer"]),
        (dict(cells_per_subject=2.5), ["cells_per_subject", "positive integer"]),
        (dict(size=31), ["The 'size' parameter must be an int in the range [32, 2048]. Got 31 instead.",
                          "--size 450"]),
        (dict(size=450.0), ["The 'size' parameter must be an int", "Got 450.0"]),
        (dict(seed=-1), ["seed", "non-negative"]),
        (dict(prelim_subjects=(1,)), ["prelim_subjects", "two counts"]),
        (dict(final_subjects=(1, -1)), ["final_subjects", "--final-subjects", ">= 0"]),
        (dict(n_jobs=0), ["n_jobs", "--jobs"]),
    ],
)
def test_bad_arguments(tmp_path, kwargs, words):
    with pytest.raises(ConfigError) as info:
        generate_dataset(tmp_path / "x", **{"size": 48, **kwargs})
    for word in words:
        assert word in str(info.value)
    assert not (tmp_path / "x").exists(), "nothing is written for bad arguments"


def test_out_not_empty_or_a_file(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"not empty.*choose a new folder"):
        generate_dataset(busy, subjects_all=1, subjects_hem=1, cells_per_subject=1, size=48)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=r"is a file.*choose another path"):
        generate_dataset(a_file, subjects_all=1, subjects_hem=1, cells_per_subject=1, size=48)
    # an existing empty folder is fine
    (tmp_path / "empty").mkdir()
    s = generate_dataset(tmp_path / "empty", subjects_all=1, subjects_hem=1, cells_per_subject=1, size=48)
    assert s.n_images == 6


def test_bad_label():
    prof = make_subject_profile(np.random.default_rng(0), "1", "all")
    with pytest.raises(ConfigError, match="label 'blast'"):
        render_cell(np.random.default_rng(0), "blast", prof, 64)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["synth", str(out), "--subjects-all", "3", "--subjects-hem", "3",
               "--cells-per-subject", "2", "--size", "40", "--seed", "4"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(out / ROOT_NAME)
    text = "\n".join(lines)
    for word in ("fold_0", "fold_1", "fold_2", "prelim", "final", "ALL", "HEM", "subjects", " s"):
        assert word in text
    n = len(list((out / ROOT_NAME).rglob("*.png")))
    assert re.search(rf"\b{n} images of 40x40 px \(PNG, [0-9.]+ MB\)", text)


def test_cli_error_and_help(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    assert main(["synth", str(busy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not empty" in err
    assert main(["synth", str(tmp_path / "y"), "--size", "8"]) == 2
    assert "--size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    helptext = capsys.readouterr().out
    for word in ("--subjects-all", "default 25", "default 12", "default 40", "default 450", "2.06:1"):
        assert word in helptext


# --------------------------------------------------------------------------------------------
# Realism against the real samples
# --------------------------------------------------------------------------------------------


def _cell_stats(img: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Mean RGB inside the cell, its area (threshold at 1, as the paper crops) and per-channel std."""
    gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    mask = gray >= 1
    px = img[mask].astype(np.float64)
    return px.mean(axis=0), int(mask.sum()), px.std(axis=0)


@pytest.fixture(scope="module")
def real_by_class():
    if not (REAL / "all").is_dir() or not (REAL / "hem").is_dir():
        pytest.skip(f"real C-NMC samples not found at {REAL} (they live outside the repository, "
                    "in ../shared/real-samples; a fresh clone does not have them)")
    out = {c: [_read_rgb(p) for p in sorted((REAL / c).glob("*.bmp"))] for c in ("all", "hem")}
    if min(len(v) for v in out.values()) < 10:
        pytest.skip(f"too few real samples in {REAL} (need 10 per class)")
    return out


def test_realism_matches_held_out_real_samples(tmp_path, real_by_class, real_samples):
    # Issue 14: compared with the half of the real samples the generator was NOT calibrated on
    # (was: all 40, the same images the constants were tuned on), in the shared hand features.
    from cnmc_core.data.cell_features import (
        HELD_OUT_HALF,
        features_of_files,
        real_sample_halves,
    )

    summary = generate_dataset(tmp_path / "real-size", subjects_all=10, subjects_hem=10,
                               cells_per_subject=3, size=450, seed=0, prelim_subjects=(0, 0),
                               final_subjects=(0, 0))
    held = real_sample_halves(real_samples)[HELD_OUT_HALF]
    X_real = features_of_files([p for p, _, _ in held])
    y_real = np.array([y for _, y, _ in held])
    names = ("area", "circularity", "solidity", "grey_sd", "bright_frac", "lap_sd", "mean_r", "mean_b")
    tolerance = {"area": 0.15, "grey_sd": 0.15, "lap_sd": 0.15, "mean_r": 0.15, "mean_b": 0.15,
                 "bright_frac": 0.25}
    syn_mean_rgb = {}
    for c, yv in (("all", 1), ("hem", 0)):
        files = sorted((summary.root / "training_data").glob(f"fold_*/{c}/*.png"))
        assert len(files) == 30
        X_syn = features_of_files(files)
        syn = dict(zip(names, X_syn.mean(axis=0)))
        real = dict(zip(names, X_real[y_real == yv].mean(axis=0)))
        report = "\n".join(f"{c} {k}: synthetic {syn[k]:.3f} held-out real {real[k]:.3f}" for k in names)
        for key, tol in tolerance.items():
            assert abs(syn[key] - real[key]) <= tol * real[key], f"{c} {key} off by more than {tol:.0%}:\n{report}"
        syn_mean_rgb[c] = np.mean([_cell_stats(_read_rgb(p))[0] for p in files], axis=0)
        # channel order (a BGR/RGB mix-up keeps every channel within 15 %): blue > red > green
        real_rgb = np.mean([_cell_stats(im)[0] for im in real_by_class[c]], axis=0)
        assert list(np.argsort(syn_mean_rgb[c])) == list(np.argsort(real_rgb)) == [1, 0, 2]
    # the class difference in size that the real data shows: ALL larger
    area = {c: np.mean([_cell_stats(_read_rgb(p))[1] for p in
                        (summary.root / "training_data").glob(f"fold_*/{c}/*.png")]) for c in ("all", "hem")}
    real_area = {c: np.mean([_cell_stats(im)[1] for im in real_by_class[c]]) for c in ("all", "hem")}
    assert area["all"] > 1.15 * area["hem"]
    assert real_area["all"] > 1.15 * real_area["hem"]


# --------------------------------------------------------------------------------------------
# Class signal and the subject leak
# --------------------------------------------------------------------------------------------


def _features(img: np.ndarray) -> list[float]:
    """Cheap per-image features: colour, size, texture, light/dark spots, outline."""
    size = img.shape[0]
    gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    mask = (gray >= 1).astype(np.uint8)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    inner = dist > max(2.0, 10.0 * size / 450)
    g = gray.astype(np.float32)
    px = img[mask > 0].astype(np.float32)
    gi = g[inner]
    mu, sd = float(gi.mean()), float(gi.std()) + 1e-6
    b1 = cv2.GaussianBlur(g, (0, 0), 1.0)
    b2 = cv2.GaussianBlur(g, (0, 0), 3.0)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(c)
    solidity = area / max(cv2.contourArea(cv2.convexHull(c)), 1.0)
    return [*px.mean(axis=0), *px.std(axis=0), mask.mean(), float((b1 - b2)[inner].std()),
            float((gi < mu - 1.8 * sd).mean()), float((gi > mu + 1.8 * sd).mean()), solidity]


@pytest.fixture(scope="module")
def feature_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("leak") / "ds"
    summary = generate_dataset(out, subjects_all=18, subjects_hem=14, cells_per_subject=12, size=160,
                               seed=2, prelim_subjects=(0, 0), final_subjects=(0, 0))
    files = sorted(summary.root.glob("training_data/fold_*/*/*.png"))
    X = np.array([_features(_read_rgb(p)) for p in files])
    y = np.array([1 if p.name.endswith("_all.png") else 0 for p in files])
    groups = np.array([p.name.split("_")[1] for p in files])
    return X, y, groups


def test_class_signals_point_the_right_way(feature_table):
    X, y, _ = feature_table
    area, dark, light, solidity = X[:, 6], X[:, 8], X[:, 9], X[:, 10]
    assert area[y == 1].mean() > 1.15 * area[y == 0].mean(), "blasts are larger"
    assert light[y == 1].mean() > light[y == 0].mean(), "blasts show lighter nucleoli"
    assert dark[y == 0].mean() > dark[y == 1].mean(), "mature cells show darker chromatin clumps"
    # Medians (issue 14): a few mature cells with an attached fragment pull the HEM mean below
    # ALL's, as on the real samples (mean solidity ALL 0.979, HEM 0.975; medians 0.979, 0.986).
    assert np.median(solidity[y == 1]) < np.median(solidity[y == 0]), "blasts: more irregular outline"
    # colour carries no class signal on average (stain-normalised, as in the real data)
    assert np.abs(X[y == 1, :3].mean(0) - X[y == 0, :3].mean(0)).max() < 4.0


def test_random_split_leaks_subjects(feature_table):
    from sklearn.metrics import f1_score
    from sklearn.model_selection import (
        StratifiedGroupKFold,
        StratifiedKFold,
        cross_val_predict,
    )
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, groups = feature_table
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5))
    by_image = cross_val_predict(model, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    by_subject = cross_val_predict(model, X, y, groups=groups,
                                   cv=StratifiedGroupKFold(5, shuffle=True, random_state=0))
    f1_image = f1_score(y, by_image, average="weighted")
    f1_subject = f1_score(y, by_subject, average="weighted")
    # chance: guessing at the class prior scores p^2 + q^2 (about 0.51 here); with the issue-14
    # generator the subject-disjoint score measured 0.63, the random-by-image one 0.69
    p = y.mean()
    chance = p**2 + (1 - p) ** 2
    msg = f"weighted F1: random-by-image {f1_image:.3f}, subject-disjoint {f1_subject:.3f}, chance {chance:.3f}"
    assert f1_image > f1_subject + 0.05, msg  # the leak: neighbours from the same subject
    # a real class signal, not only subjects; issue 14 moved most of it from these scalar
    # features into the chromatin pattern (the 8-feature LR is meant to score ~0.70, as on the
    # real samples), so the margin over chance is 0.08 (was 0.15)
    assert f1_subject > chance + 0.08, msg
    assert f1_subject < 0.97, msg  # and the classes overlap
