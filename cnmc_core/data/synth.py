"""Synthetic stand-in for the C-NMC 2019 dataset: varied single-cell images, fast, seeded.

The real C-NMC images cannot be downloaded everywhere this project runs, so every other part
(training, ensembles, the dashboard, the tests) is developed on this generator's output. It writes
the Kaggle mirror layout of ``DESIGN.md``, PNG by default (``image_format="bmp"``: 24-bit BMPs
as C-NMC ships them; same pixels, same names but the extension)::

    OUT/C-NMC_Leukemia/training_data/fold_{0,1,2}/{all,hem}/UID_<subject>_<image>_<cell>_<all|hem>.png
    OUT/C-NMC_Leukemia/validation_data/C-NMC_test_prelim_phase_data/{N}.png
    OUT/C-NMC_Leukemia/validation_data/C-NMC_test_prelim_phase_data_labels.csv   (Patient_ID,new_names,labels)
    OUT/C-NMC_Leukemia/testing_data/C-NMC_test_final_phase_data/{N}.png           (unlabelled)
    OUT/.synth_info.json   (the marker: parameters, counts, "synthetic": true; written last;
                            see :func:`cnmc_core.data.provenance.dataset_provenance`)

ALL subjects are numbered ``1``, ``2``, ...; healthy subjects ``H1``, ``H2``, ... (always upper
case; the real data has one ``h3``, which the real samples exercise). Each subject lives in
exactly one of fold_0/1/2, the preliminary set or the final set, so the preliminary and final
subjects are unseen in training; subject numbers are shuffled across those sets.

The cells (:mod:`~cnmc_core.data.synth_cells`, outlines in :mod:`~cnmc_core.data.synth_shapes`,
chromatin in :mod:`~cnmc_core.data.synth_texture`): one purple cell on pure black, never touching
the border, with the real segmentation's bright edge halo. Every cell draws a latent
blast-likeness ``m`` (ALL subjects around 0.68, HEM around 0.32, spread 0.16 per cell plus a
per-subject shift), and what is class-related follows ``m``, mostly in the chromatin *pattern*
(blast-like: even, with 1-3 large pale nucleoli; mature-like: coarse dark clumps in a pale
network), whose grey-level spread is drawn alike for both classes; weakly in size (blasts larger),
outline (blasts more often notched or cleaved) and tint (blasts a little bluer). Outlines vary
as real ones do (ovals, lumps, notches, clefts, kidney shapes, flat sides, attached fragments);
some cells keep a thin rim of cytoplasm. ALL subjects contribute mature-looking cells and vice
versa (the labels are per subject, not per cell), so a good model stays well short of 100 %.

The subject leak: each subject has its own stain, size, texture scale and contrast, halo and
outline style, and the cells of one microscope image share a stain shift of their own; the
subject's part is kept below the class signal, so a random split by image gains a few points of
test AUC over a subject-disjoint one (demo_scratch, seed 0: 0.88 vs 0.83; about 0.04 on real
data in the literature), not the 0.17 of generator version 1.

Calibration is honest: the numeric constants (areas, colour, spreads) were fitted on the ``fit``
half of the 40 real samples only (:func:`cnmc_core.data.cell_features.real_sample_halves`); the
``held_out`` half is only measured (``python -m cnmc_core synth --report``,
``benchmarks/bench_synth.py``).

Every length scales with ``size / 450`` (areas with its square). The output is a pure function of
the arguments: the same seed gives the same bytes, whatever ``n_jobs`` is.

Defaults: 25 ALL and 12 HEM subjects in the training folds, 4 + 2 unseen subjects in the
preliminary set and 4 + 2 in the final set, 40 cells per subject on average (subjects vary between
about 0.6x and 1.4x of that, class totals are exact): 1,960 images, 1,320 ALL : 640 HEM (2.06:1),
1,480 of them in the training folds; 450 px; PNG (about 91 MB); seed 0.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnmc_core.data.provenance import INFO_NAME
from cnmc_core.data.synth_cells import (
    DEFAULT_SIZE,
    REFERENCE_SIZE,
    SubjectTask,
    make_subject_profile,
    render_subject,
)
from cnmc_core.data.synth_checks import (
    DEFAULT_FORMAT,
    IMAGE_FORMATS,
    check_count,
    check_out,
    check_synth_args,
    default_unseen_subjects,
)

__all__ = [
    "DEFAULT_SUBJECTS_ALL",
    "DEFAULT_SUBJECTS_HEM",
    "DEFAULT_CELLS_PER_SUBJECT",
    "DEFAULT_SEED",
    "ROOT_NAME",
    "TRAIN_DIR",
    "PRELIM_DIR",
    "LABELS_CSV_NAME",
    "LABELS_CSV_DIR",
    "FINAL_DIR",
    "INFO_NAME",
    "GENERATOR_VERSION",
    "IMAGE_FORMATS",
    "DEFAULT_FORMAT",
    "ProgressFn",
    "SynthSummary",
    "default_unseen_subjects",
    "plan_dataset",
    "generate_dataset",
]

DEFAULT_SUBJECTS_ALL = 25
DEFAULT_SUBJECTS_HEM = 12
DEFAULT_CELLS_PER_SUBJECT = 40
DEFAULT_SEED = 0
ROOT_NAME = "C-NMC_Leukemia"
TRAIN_DIR = "training_data"
PRELIM_DIR = "validation_data/C-NMC_test_prelim_phase_data"
LABELS_CSV_NAME = "C-NMC_test_prelim_phase_data_labels.csv"
LABELS_CSV_DIR = "validation_data"
FINAL_DIR = "testing_data/C-NMC_test_final_phase_data"
GENERATOR_VERSION = 2
ProgressFn = Callable[[int, int], None]


@dataclass
class SynthSummary:
    """What :func:`generate_dataset` wrote (or, from :func:`plan_dataset`, would write).

    Attributes:
        out: the output folder given.
        root: the dataset root ``OUT/C-NMC_Leukemia`` (what a scanner is pointed at).
        labels_csv: the preliminary-phase labels file.
        info_path: ``OUT/.synth_info.json``, the parameters and counts (a dot file, so dataset
            scanners skip it).
        seed: the seed used.
        size: the image side in pixels.
        counts: images per split (``fold_0``, ``fold_1``, ``fold_2``, ``prelim``, ``final``) and
            class (``all``, ``hem``).
        subjects: subject tokens per split and class.
        n_images: total number of images.
        seconds: wall time of the generation (0 for a plan).
    """

    out: Path
    root: Path
    labels_csv: Path
    info_path: Path
    seed: int
    size: int
    counts: dict[str, dict[str, int]]
    subjects: dict[str, dict[str, list[str]]]
    n_images: int
    seconds: float = 0.0

    def class_totals(self) -> dict[str, int]:
        """Images per class over all splits."""
        return {c: sum(v[c] for v in self.counts.values()) for c in ("all", "hem")}

    def to_dict(self) -> dict:
        """A JSON-friendly dict (paths as strings)."""
        d = dataclasses.asdict(self)
        for key in ("out", "root", "labels_csv", "info_path"):
            d[key] = str(d[key])
        return d


_SPLITS = ("fold_0", "fold_1", "fold_2", "prelim", "final")


def _split_counts(rng: np.random.Generator, n_subjects: int, total: int) -> list[int]:
    """Split ``total`` cells over subjects with 0.6x-1.4x variation, exact total, each >= 1."""
    if n_subjects == 0:
        return []
    w = rng.uniform(0.6, 1.4, n_subjects)
    raw = w / w.sum() * total
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    for i in np.flatnonzero(counts < 1):  # at least one cell each (taken from the largest)
        j = int(np.argmax(counts))
        counts[j] -= 1
        counts[i] += 1
    return [int(c) for c in counts]


def _cell_names(rng: np.random.Generator, subject: str, label: str, n: int, ext: str) -> list[str]:
    """``UID_<subject>_<image>_<cell>_<label>.<ext>`` names: 1-4 cells per microscope image."""
    names: list[str] = []
    image_no = int(rng.integers(1, 6))
    while len(names) < n:
        n_cells = min(n - len(names), 1 + int(rng.poisson(1.0)))
        for c in range(1, n_cells + 1):
            names.append(f"UID_{subject}_{image_no}_{c}_{label}.{ext}")
        image_no += int(rng.integers(1, 5))
    return names


def _plan(out: Path, subjects_all: int, subjects_hem: int, cells_per_subject: int, size: int,
          seed: int, unseen: dict[str, tuple[int, int]], fmt: str = DEFAULT_FORMAT):
    """Who is in which set, file names and destinations; one seeded generator, no rendering."""
    plan_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    root = out / ROOT_NAME
    tasks: list[SubjectTask] = []
    subjects: dict[str, dict[str, list[str]]] = {s: {"all": [], "hem": []} for s in _SPLITS}
    for cls_code, (label, n_train) in enumerate((("all", subjects_all), ("hem", subjects_hem))):
        n_pre, n_fin = unseen["prelim"][cls_code], unseen["final"][cls_code]
        # Subject numbers are shuffled over the sets, so the number does not reveal the set.
        numbers = plan_rng.permutation(np.arange(1, n_train + n_pre + n_fin + 1))
        prefix = "" if label == "all" else "H"
        groups = {
            "train": numbers[:n_train],
            "prelim": numbers[n_train:n_train + n_pre],
            "final": numbers[n_train + n_pre:],
        }
        for group, nums in groups.items():
            counts = _split_counts(plan_rng, len(nums), len(nums) * cells_per_subject)
            for i, (num, n_cells) in enumerate(zip(nums, counts)):
                tok = f"{prefix}{int(num)}"
                # Training subjects are dealt round-robin in a random order: each subject sits in
                # exactly one fold and every fold gets both classes.
                split = f"fold_{i % 3}" if group == "train" else group
                prof_rng = np.random.default_rng(np.random.SeedSequence([seed, 2, cls_code, int(num)]))
                task = SubjectTask(profile=make_subject_profile(prof_rng, tok, label), split=split,
                                    cell_seed=(seed, 3, cls_code, int(num)), size=size)
                folder = root / TRAIN_DIR / split / label
                task.files = [(n, str(folder / n)) for n in _cell_names(plan_rng, tok, label, n_cells, fmt)]
                tasks.append(task)
                subjects[split][label].append(tok)

    # Preliminary and final images are renamed N.<ext> in a shuffled order, as in the real data.
    prelim_rows: list[tuple[str, str, int]] = []
    for split, folder in (("prelim", root / PRELIM_DIR), ("final", root / FINAL_DIR)):
        slots = [(ti, fi) for ti, t in enumerate(tasks) if t.split == split for fi in range(len(t.files))]
        order = plan_rng.permutation(len(slots))
        for pos, j in enumerate(order):
            ti, fi = slots[j]
            name = tasks[ti].files[fi][0]
            tasks[ti].files[fi] = (name, str(folder / f"{pos + 1}.{fmt}"))
            if split == "prelim":
                prelim_rows.append((name, f"{pos + 1}.{fmt}", 1 if tasks[ti].profile.label == "all" else 0))

    counts = {s: {"all": 0, "hem": 0} for s in _SPLITS}
    for t in tasks:
        counts[t.split][t.profile.label] += len(t.files)
    summary = SynthSummary(out=out, root=root, labels_csv=root / LABELS_CSV_DIR / LABELS_CSV_NAME,
                           info_path=out / INFO_NAME, seed=seed, size=size, counts=counts,
                           subjects=subjects, n_images=sum(len(t.files) for t in tasks))
    return tasks, prelim_rows, summary


def plan_dataset(
    out: str | os.PathLike = "OUT",
    subjects_all: int = DEFAULT_SUBJECTS_ALL,
    subjects_hem: int = DEFAULT_SUBJECTS_HEM,
    cells_per_subject: int = DEFAULT_CELLS_PER_SUBJECT,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    *,
    prelim_subjects: tuple[int, int] | None = None,
    final_subjects: tuple[int, int] | None = None,
    image_format: str = DEFAULT_FORMAT,
) -> SynthSummary:
    """What :func:`generate_dataset` would write with these arguments, without writing anything.

    Cheap (no image is rendered): for a dashboard preview of the counts.

    Args:
        out, subjects_all, subjects_hem, cells_per_subject, size, seed, prelim_subjects,
        final_subjects, image_format: as for :func:`generate_dataset` (``out`` is not checked or
        created).

    Returns:
        The :class:`SynthSummary` that generation would return (``seconds`` = 0).

    Raises:
        ConfigError: for the same bad arguments as :func:`generate_dataset`.
    """
    args = check_synth_args(subjects_all, subjects_hem, cells_per_subject, size, seed, prelim_subjects,
                       final_subjects, image_format)
    return _plan(Path(out), *args)[2]


def generate_dataset(
    out: str | os.PathLike,
    subjects_all: int = DEFAULT_SUBJECTS_ALL,
    subjects_hem: int = DEFAULT_SUBJECTS_HEM,
    cells_per_subject: int = DEFAULT_CELLS_PER_SUBJECT,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    *,
    prelim_subjects: tuple[int, int] | None = None,
    final_subjects: tuple[int, int] | None = None,
    image_format: str = DEFAULT_FORMAT,
    n_jobs: int | None = None,
    progress: ProgressFn | None = None,
) -> SynthSummary:
    """Write a synthetic C-NMC dataset in the Kaggle mirror layout (see the module docstring).

    Args:
        out: output folder; created if missing, must be empty if it exists.
        subjects_all: ALL subjects in the training folds (default 25).
        subjects_hem: HEM (healthy) subjects in the training folds (default 12).
        cells_per_subject: mean images per subject (default 40); each subject gets 0.6x-1.4x of
            it, and each class gets exactly ``subjects * cells_per_subject`` images per set.
        size: image side in pixels, 32-2048 (default 450, as the real images).
        seed: a non-negative integer; the same arguments give the same bytes (default 0).
        prelim_subjects: ``(n_all, n_hem)`` unseen subjects of the labelled preliminary set
            (default :func:`default_unseen_subjects` of each class count: 4 and 2 for the
            defaults); 0 is allowed.
        final_subjects: ``(n_all, n_hem)`` unseen subjects of the unlabelled final set (same default).
        image_format: ``"png"`` (default: lossless, about 50 KB an image at 450 px) or ``"bmp"``
            (24-bit BMP like the real data, 608 KB an image at 450 px); the file names end with it.
        n_jobs: worker processes (default: the CPU count, at most 8, and 1 for small jobs; 1
            renders in this process). The output does not depend on it.
        progress: called as ``progress(done, total)`` in images, at the start and after each subject.

    Returns:
        A :class:`SynthSummary` with the paths, counts and subjects per split and class.

    Raises:
        ConfigError: a count that is not a positive integer, a size out of range, a bad seed, an
            unknown image format, or ``out`` existing and not empty (or being a file); nothing is written then.
        OSError: a file that cannot be written (disk full, permissions); what was written so far
            is left in ``out``.
    """
    import pandas as pd

    from cnmc_core.workspace.fileio import atomic_write_csv, atomic_write_json

    t0 = time.perf_counter()
    args = check_synth_args(subjects_all, subjects_hem, cells_per_subject, size, seed, prelim_subjects,
                       final_subjects, image_format)
    if n_jobs is not None:
        n_jobs = check_count(n_jobs, "n_jobs", "--jobs")
    out = Path(out)
    check_out(out)
    tasks, prelim_rows, summary = _plan(out, *args)

    root = summary.root
    for sub in ("fold_0", "fold_1", "fold_2"):
        for label in ("all", "hem"):
            (root / TRAIN_DIR / sub / label).mkdir(parents=True, exist_ok=True)
    (root / PRELIM_DIR).mkdir(parents=True, exist_ok=True)
    (root / FINAL_DIR).mkdir(parents=True, exist_ok=True)

    # Render: one task per subject. A subject's cells come from its own seeded generator, so the
    # bytes do not depend on the number of workers or the order in which they finish.
    total = summary.n_images
    if progress is not None:
        progress(0, total)
    if n_jobs is None:
        n_jobs = min(os.cpu_count() or 1, 8)
        if total * (size / REFERENCE_SIZE) ** 2 < 150:  # too little work to pay for starting workers
            n_jobs = 1
    if n_jobs == 1:
        results = map(render_subject, tasks)
    else:
        from joblib import Parallel, delayed

        # Largest subjects first keeps the workers evenly busy at the end.
        order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i].files))
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(render_subject)(tasks[i]) for i in order
        )
    done = 0
    for recs in results:
        done += len(recs)
        if progress is not None:
            progress(done, total)

    prelim_rows.sort(key=lambda r: int(Path(r[1]).stem))
    atomic_write_csv(summary.labels_csv,
                     pd.DataFrame(prelim_rows, columns=["Patient_ID", "new_names", "labels"]))
    info = summary.to_dict()
    info.pop("seconds")  # keep the whole tree byte-identical for a seed
    info.update(generator="cnmc_core.data.synth", generator_version=GENERATOR_VERSION, synthetic=True,
                out=".", root=ROOT_NAME, labels_csv=str(summary.labels_csv.relative_to(out)),
                info_path=INFO_NAME, subjects_all=args[0], subjects_hem=args[1],
                cells_per_subject=args[2], prelim_subjects=list(args[5]["prelim"]),
                final_subjects=list(args[5]["final"]), image_format=args[6])
    atomic_write_json(summary.info_path, info)
    summary.seconds = time.perf_counter() - t0
    return summary
