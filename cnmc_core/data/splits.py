"""Train/val/test splits by protocol, grouped k-fold, and the paper's class balancing.

Protocols (every run records the one it used; every score shown names it):

* ``subject`` (default): subject-disjoint, stratified at subject level. A C-NMC subject is all
  ALL or all HEM, so the subjects of each class are shuffled and dealt 60/20/20. Honest.
* ``paper``: the paper's random stratified split by image, 60/20/20 over the training folds.
  Cells of one subject land in train and test, the model can learn the subject: **leaky**.
* ``official``: train on fold_0 + fold_1, validate on fold_2, test on the labelled
  preliminary-phase set (whose subjects are unseen in the folds).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cnmc_core.contracts import DATA_SPLITS, KFOLD_PROTOCOLS, protocol_info
from cnmc_core.exceptions import ConfigError, DataError
from cnmc_core.validation import check_scalar, check_seed
from cnmc_core.workspace.fileio import atomic_write_csv

__all__ = [
    "check_fractions",
    "check_kfold",
    "make_split",
    "grouped_kfold",
    "image_kfold",
    "check_split",
    "save_split",
    "load_split",
]

def check_fractions(fractions, name: str = "fractions") -> tuple[float, float, float]:
    """Return ``fractions`` as three floats if they are train/val/test shares: each finite and
    in (0, 1), summing to 1 (within 1e-6).

    Args:
        fractions: the three shares (a sequence of numbers).
        name: the argument as the caller knows it (``fractions``, or the CLI's ``--fractions``).

    Raises:
        ConfigError: not three numbers, a share that is NaN, infinite, 0 or less, 1 or more, or
            shares that do not sum to 1; the message names ``name``, the rule and the value.
    """
    example = "Give three shares (train, val, test) above 0 that sum to 1, e.g. 0.6,0.2,0.2."
    try:
        values = tuple(fractions)
    except TypeError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"The {name!r} parameter must be three numbers. Got {fractions!r} "
                          f"instead. {example}")
    shares = tuple(check_scalar(v, name, "float", low=0, high=1, closed="neither", fix=example)
                   for v in values)
    if abs(sum(shares) - 1) > 1e-6:
        raise ConfigError(f"The {name!r} parameter must sum to 1. Got {fractions!r} (sum "
                          f"{sum(shares):g}) instead. {example}")
    return shares


def _deal(n: int, fractions: tuple[float, float, float]) -> np.ndarray:
    """Counts per split for ``n`` items: rounded shares, each split non-empty when n >= 3."""
    counts = np.floor(np.asarray(fractions) * n).astype(int)
    # hand out what rounding left over to the splits furthest below their share
    while counts.sum() < n:
        deficit = np.asarray(fractions) * n - counts
        counts[int(np.argmax(deficit))] += 1
    if n >= 3:
        for k in range(3):
            if counts[k] == 0:
                counts[k] = 1
                counts[int(np.argmax(counts))] -= 1
    return counts


def _labelled(manifest: pd.DataFrame) -> pd.DataFrame:
    labelled = manifest[manifest["y"].isin([0, 1])]
    if labelled.empty:
        raise DataError("The manifest has no labelled image (y 0 or 1); scan a labelled dataset.")
    return labelled


def _require_subjects(frame: pd.DataFrame, protocol: str) -> None:
    no_subject = frame[frame["subject"].fillna("") == ""]
    if len(no_subject):
        raise DataError(
            f"The {protocol!r} split needs the subject of every image, but {len(no_subject)} "
            f"labelled image(s) have none (e.g. {no_subject['path'].iloc[0]}); name files "
            "UID_<subject>_<image>_<cell>_<all|hem>.bmp, or use --protocol paper (leaky)."
        )
    mixed = frame.groupby("subject")["y"].nunique()
    mixed = mixed[mixed > 1]
    if len(mixed):
        raise DataError(
            f"Subject(s) {mixed.index[:5].tolist()} have both ALL and HEM images; a C-NMC subject "
            "is one class. Check the labels of those files."
        )


def _require_both_classes(frame: pd.DataFrame, what: str) -> None:
    present = set(frame["y"].unique())
    if present != {0, 1}:
        only = "ALL" if 1 in present else "HEM"
        raise DataError(
            f"{what} has only {only} images; both ALL and HEM are needed to train and score a "
            "classifier. Add images of the other class."
        )


def make_split(
    manifest: pd.DataFrame,
    protocol: str = "subject",
    seed: int = 0,
    fractions=(0.6, 0.2, 0.2),
    kfold: dict | None = None,
) -> pd.DataFrame:
    """Assign labelled images to train/val/test.

    Args:
        manifest: a manifest (see :mod:`cnmc_core.data.manifest`).
        protocol: ``subject``, ``paper`` or ``official``; or a k-fold protocol of a study,
            ``subject-kfold`` (:func:`grouped_kfold`) or the leaky ``image-kfold``
            (:func:`image_kfold`), which need ``kfold``.
        seed: the random seed; the same seed gives the same split (and the same folds).
        fractions: train/val/test shares (of subjects for ``subject``, of images for ``paper``;
            ignored by ``official`` and the k-fold protocols).
        kfold: ``{"k": K, "fold": i}`` for a k-fold protocol (fold ``i`` test, fold ``i + 1``
            val), None otherwise.

    Returns:
        A frame with columns ``image_id`` and ``split`` (``train``/``val``/``test``), sorted by
        split then image id. Unlabelled images are left out.

    Raises:
        ConfigError: unknown protocol, bad fractions (:func:`check_fractions`) or a seed NumPy
            does not take (:func:`~cnmc_core.validation.check_seed`).
        DataError: the data cannot be split that way (no subjects, one class, missing folds...).
    """
    protocol_info(protocol)
    check_seed(seed)
    if protocol in KFOLD_PROTOCOLS:
        if not isinstance(kfold, dict) or set(kfold) != {"k", "fold"}:
            raise ConfigError(f"The {protocol!r} protocol needs kfold={{'k': K, 'fold': i}} (its "
                              f"number of folds and which is test); got {kfold!r}. A study sets "
                              "it for each of its runs.")
        fold_of = grouped_kfold if protocol == "subject-kfold" else image_kfold
        return fold_of(manifest, k=kfold["k"], fold=kfold["fold"], seed=seed)
    if kfold is not None:
        raise ConfigError(f"kfold={kfold!r} applies to the k-fold protocols "
                          f"{list(KFOLD_PROTOCOLS)} only, not to {protocol!r}.")
    fractions = check_fractions(fractions)
    labelled = _labelled(manifest)
    rng = np.random.default_rng(seed)
    if protocol == "subject":
        _require_subjects(labelled, protocol)
        _require_both_classes(labelled, "The dataset")
        assignment = {}
        for y in (1, 0):
            subjects = np.array(sorted(labelled.loc[labelled["y"] == y, "subject"].unique()))
            if len(subjects) < 3:
                raise DataError(
                    f"The subject split needs at least 3 {'ALL' if y else 'HEM'} subjects (one per "
                    f"split); the dataset has {len(subjects)}. Add subjects or use --protocol paper."
                )
            rng.shuffle(subjects)
            counts = _deal(len(subjects), fractions)
            bounds = np.cumsum(counts)[:-1]
            for name, part in zip(DATA_SPLITS, np.split(subjects, bounds)):
                for subject in part:
                    assignment[subject] = name
        split = labelled["subject"].map(assignment)
        result = pd.DataFrame({"image_id": labelled["image_id"], "split": split})
    elif protocol == "paper":
        pool = labelled[labelled["source"].str.startswith("fold_")]
        if pool.empty:  # a plain all/hem folder: the paper's split over everything labelled
            pool = labelled
        _require_both_classes(pool, "The dataset")
        parts = []
        for y in (1, 0):
            ids = np.array(sorted(pool.loc[pool["y"] == y, "image_id"]))
            if len(ids) < 3:
                raise DataError(
                    f"The paper split needs at least 3 {'ALL' if y else 'HEM'} images; found {len(ids)}."
                )
            rng.shuffle(ids)
            bounds = np.cumsum(_deal(len(ids), fractions))[:-1]
            for name, part in zip(DATA_SPLITS, np.split(ids, bounds)):
                parts.append(pd.DataFrame({"image_id": part, "split": name}))
        result = pd.concat(parts, ignore_index=True)
    else:  # official
        where = {"train": ("fold_0", "fold_1"), "val": ("fold_2",), "test": ("prelim",)}
        parts = []
        for name, sources in where.items():
            part = labelled[labelled["source"].isin(sources)]
            if part.empty:
                raise DataError(
                    f"The official split needs labelled {' and '.join(sources)} images for {name}, "
                    "and the dataset has none; scan the full C-NMC folder (with the preliminary "
                    "labels CSV) or use --protocol subject."
                )
            parts.append(pd.DataFrame({"image_id": part["image_id"], "split": name}))
        result = pd.concat(parts, ignore_index=True)
    result = _sorted(result)
    check_split(manifest, result, protocol)
    return result


def check_kfold(k, fold, seed=0, names: tuple[str, str, str] = ("k", "fold", "seed")) -> None:
    """Check the arguments of :func:`grouped_kfold` (``names``: as the caller knows them, e.g.
    the CLI's ``("--kfold", "--fold", "--seed")``).

    Raises:
        ConfigError: ``k`` not an int >= 3 (test, val and train folds), ``fold`` not an int
            from 0 to ``k - 1``, or ``seed`` not one NumPy takes.
    """
    k = check_scalar(k, names[0], "int", low=3,
                     fix="k-fold needs at least 3 folds (test, val and train), e.g. 5.")
    check_scalar(fold, names[1], "int", low=0, high=k - 1,
                 fix=f"Number the folds 0 to {k - 1}: fold i is test and fold i + 1 val.")
    check_seed(seed, names[2])


def grouped_kfold(manifest: pd.DataFrame, k: int = 5, fold: int = 0, seed: int = 0) -> pd.DataFrame:
    """Subject-grouped, class-stratified k-fold: fold ``fold`` is test, the next one val.

    Subjects of each class are shuffled and dealt round-robin to ``k`` groups, so every group
    holds subjects of both classes and no subject is in two groups.

    Returns:
        ``image_id``, ``split`` as :func:`make_split`.

    Raises:
        ConfigError: bad ``k``, ``fold`` or ``seed`` (see :func:`check_kfold`).
        DataError: fewer subjects of a class than folds, or no subjects.
    """
    check_kfold(k, fold, seed)
    labelled = _labelled(manifest)
    _require_subjects(labelled, "kfold")
    _require_both_classes(labelled, "The dataset")
    rng = np.random.default_rng(seed)
    group_of = {}
    for y in (1, 0):
        subjects = np.array(sorted(labelled.loc[labelled["y"] == y, "subject"].unique()))
        if len(subjects) < k:
            raise DataError(
                f"{k}-fold needs at least {k} {'ALL' if y else 'HEM'} subjects; the dataset has "
                f"{len(subjects)}. Use a smaller k."
            )
        rng.shuffle(subjects)
        for i, subject in enumerate(subjects):
            group_of[subject] = i % k
    group = labelled["subject"].map(group_of)
    split = np.where(group == fold, "test", np.where(group == (fold + 1) % k, "val", "train"))
    result = _sorted(pd.DataFrame({"image_id": labelled["image_id"].to_numpy(), "split": split}))
    check_split(manifest, result, "subject")
    return result


def image_kfold(manifest: pd.DataFrame, k: int = 5, fold: int = 0, seed: int = 0) -> pd.DataFrame:
    """Class-stratified k-fold by image, the paper's split as folds (leaky: one subject's cells
    fall in several folds): fold ``fold`` is test, the next one val.

    The images of each class are shuffled and dealt round-robin to ``k`` groups, over the same
    labelled images as :func:`grouped_kfold`, so that the two protocols compare on one pool.

    Raises:
        ConfigError: bad ``k``, ``fold`` or ``seed``. DataError: fewer images of a class than
            folds.
    """
    check_kfold(k, fold, seed)
    labelled = _labelled(manifest)
    _require_both_classes(labelled, "The dataset")
    rng = np.random.default_rng(seed)
    group_of = {}
    for y in (1, 0):
        ids = np.array(sorted(labelled.loc[labelled["y"] == y, "image_id"]))
        if len(ids) < k:
            raise DataError(f"{k}-fold needs at least {k} {'ALL' if y else 'HEM'} images; the "
                            f"dataset has {len(ids)}. Use a smaller k.")
        rng.shuffle(ids)
        for i, image_id in enumerate(ids):
            group_of[image_id] = i % k
    group = labelled["image_id"].map(group_of)
    split = np.where(group == fold, "test", np.where(group == (fold + 1) % k, "val", "train"))
    result = _sorted(pd.DataFrame({"image_id": labelled["image_id"].to_numpy(), "split": split}))
    check_split(manifest, result, "image-kfold")
    return result


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    order = {name: i for i, name in enumerate(DATA_SPLITS)}
    frame = frame.assign(_o=frame["split"].map(order)).sort_values(["_o", "image_id"], kind="stable")
    return frame.drop(columns="_o").reset_index(drop=True)


def check_split(manifest: pd.DataFrame, split: pd.DataFrame, protocol: str) -> None:
    """Check a split against its manifest: known ids, valid names, both classes in each split,
    and for ``subject`` no subject in two splits.

    Raises:
        DataError: naming the first broken rule.
    """
    unknown = set(split["image_id"]) - set(manifest["image_id"])
    if unknown:
        raise DataError(f"The split lists {len(unknown)} image id(s) not in the manifest, e.g. {sorted(unknown)[:3]}.")
    bad = set(split["split"]) - set(DATA_SPLITS)
    if bad:
        raise DataError(f"Split names must be {list(DATA_SPLITS)}; found {sorted(bad)}.")
    merged = split.merge(manifest[["image_id", "y", "subject"]], on="image_id", how="left")
    for name in DATA_SPLITS:
        part = merged[merged["split"] == name]
        if part.empty:
            raise DataError(f"The {name} split is empty; the dataset is too small for this protocol.")
        _require_both_classes(part, f"The {name} split")
    if protocol in ("subject", "official"):
        per_subject = merged[merged["subject"] != ""].groupby("subject")["split"].nunique()
        shared = per_subject[per_subject > 1]
        if len(shared):
            raise DataError(
                f"Subject(s) {shared.index[:5].tolist()} appear in more than one split, which the "
                f"{protocol!r} protocol forbids."
            )


def save_split(split: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``image_id,split`` atomically."""
    return atomic_write_csv(path, split[["image_id", "split"]])


def load_split(path: str | os.PathLike, manifest: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read a split CSV; with ``manifest``, check it refers to that manifest's images."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Split file {path} does not exist; create it with `python -m cnmc_core split`.")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("image_id", "split") if c not in frame.columns]
    if missing:
        raise DataError(f"Split file {path} lacks column(s) {missing}; expected image_id,split.")
    if manifest is not None:
        unknown = set(frame["image_id"]) - set(manifest["image_id"])
        if unknown:
            raise DataError(
                f"Split file {path} lists {len(unknown)} image id(s) that are not in the dataset, "
                f"e.g. {sorted(unknown)[:3]}; make the split from this dataset's manifest."
            )
    return frame
