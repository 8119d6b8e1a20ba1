"""Loading members' predictions and aligning them by ``(image_id, split)``.

Runs scored on other images, splits, labels, protocols or datasets are refused with a message
that says which runs differ and how: never a silent inner join.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cnmc_core.contracts import PREDICTION_COLUMNS, SCORED_SPLITS
from cnmc_core.exceptions import CnmcError, RunError
from cnmc_core.workspace.fileio import read_json

__all__ = ["MemberPredictions", "SplitData", "AlignedPredictions", "load_predictions", "align_runs"]


@dataclass
class MemberPredictions:
    """One validated run or ensemble folder: its id, config and predictions."""

    name: str
    path: Path
    kind: str
    config: dict
    frame: pd.DataFrame
    threshold: float = 0.5


@dataclass
class SplitData:
    """One split of aligned predictions: ``probs[:, j]`` is member ``j``'s P(ALL)."""

    image_id: np.ndarray
    y: np.ndarray
    subject: np.ndarray | None
    probs: np.ndarray


@dataclass
class AlignedPredictions:
    """Members' predictions on the same images, in the first member's image order."""

    members: list[str]
    paths: list[Path]
    kinds: list[str]
    thresholds: list[float]
    split_protocol: str
    dataset_fingerprint: str
    splits: dict[str, SplitData] = field(default_factory=dict)


def load_predictions(run_dir: str | os.PathLike) -> MemberPredictions:
    """Read and validate a run or ensemble folder's ``config.json``, ``status.json`` and
    ``predictions.csv`` (columns ``image_id, split, y, prob`` and optionally ``subject``).

    Raises:
        RunError: a missing file (naming it; the run may not be finished), a run that is not
            completed, a missing column or config key, bad labels or probabilities, duplicates.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"{path} is not a run folder (it does not exist or is not a folder).")
    for fname in ("config.json", "status.json", "predictions.csv"):
        if not (path / fname).is_file():
            raise RunError(
                f"{path} has no {fname}: the run may not be finished (or the folder is not a run)."
            )
    try:
        config = read_json(path / "config.json")
        status = read_json(path / "status.json")
    except RunError:
        raise
    except CnmcError as exc:  # a malformed JSON file: same message, as a RunError
        raise RunError(str(exc)) from exc
    if not isinstance(config, dict) or not isinstance(status, dict):
        raise RunError(f"{path}: config.json and status.json must hold JSON objects.")
    kind = config.get("kind", "run")
    id_key = "ensemble_id" if kind == "ensemble" else "run_id"
    name = config.get(id_key) or path.name
    state = status.get("state")
    if state != "completed":
        raise RunError(
            f"{kind} {name!r} is {state!r}, not 'completed'; wait for it to finish or pick a "
            "completed run."
        )
    for key in ("split_protocol", "dataset_fingerprint"):
        if key not in config:
            raise RunError(f"{path / 'config.json'} has no {key!r}; it is needed to align runs.")
    try:
        frame = pd.read_csv(path / "predictions.csv", dtype={"image_id": str, "split": str,
                                                              "subject": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RunError(f"{path / 'predictions.csv'} cannot be read as CSV ({exc}).") from exc
    _check_frame(frame, path / "predictions.csv")
    threshold = config.get("threshold")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        threshold = 0.5
    return MemberPredictions(str(name), path, str(kind), config, frame, float(threshold))


def _check_frame(frame: pd.DataFrame, where: Path) -> None:
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise RunError(
            f"{where} lacks the column(s) {missing}; expected {list(PREDICTION_COLUMNS)}."
        )
    bad_split = sorted(set(frame["split"].dropna()) - set(SCORED_SPLITS))
    if bad_split or frame["split"].isna().any():
        raise RunError(f"{where}: split must be 'val' or 'test'; got {bad_split or ['(empty)']}.")
    if frame["image_id"].isna().any():
        raise RunError(f"{where}: {int(frame['image_id'].isna().sum())} rows have no image_id.")
    y = pd.to_numeric(frame["y"], errors="coerce")
    if y.isna().any() or not y.isin((0, 1)).all():
        raise RunError(f"{where}: y must be 0 (HEM) or 1 (ALL) on every row.")
    prob = pd.to_numeric(frame["prob"], errors="coerce")
    if prob.isna().any() or (prob < 0).any() or (prob > 1).any():
        raise RunError(f"{where}: prob must be a probability P(ALL) in [0, 1] on every row.")
    dup = frame.duplicated(["image_id", "split"])
    if dup.any():
        shown = ", ".join(frame.loc[dup, "image_id"].head(5))
        raise RunError(
            f"{where}: {int(dup.sum())} duplicated (image_id, split) rows, e.g. {shown}."
        )
    frame["y"] = y.astype(np.int8)
    frame["prob"] = prob.astype(np.float64)


def _fmt_ids(ids, limit: int = 5) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - limit:,} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def align_runs(
    members: Sequence[MemberPredictions | str | os.PathLike],
    *,
    min_members: int = 2,
) -> AlignedPredictions:
    """Line up members' predictions by ``(image_id, split)``.

    Every member must have the first member's split protocol, dataset fingerprint, set of
    (image_id, split) pairs, label of every image and (where both give one) subject. Both
    ``val`` and ``test`` must be present.

    Raises:
        RunError: fewer than ``min_members`` members, a member given twice, or members that
            differ; the message lists every difference, e.g. "run 'B' has 2,130 test images,
            run 'A' 2,133; 3 test images of 'A' are missing from 'B': ...".
    """
    loaded = [m if isinstance(m, MemberPredictions) else load_predictions(m) for m in members]
    if len(loaded) < min_members:
        raise RunError(f"At least {min_members} runs are needed; got {len(loaded)}.")
    names = [m.name for m in loaded]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RunError(f"Run(s) {twice} given more than once; give each member once.")
    ref = loaded[0]
    problems: list[str] = []
    for key, what in (("split_protocol", "split protocol"), ("dataset_fingerprint", "dataset")):
        values = {m.name: m.config[key] for m in loaded}
        if len(set(map(str, values.values()))) > 1:
            listed = ", ".join(f"{n!r} {v!r}" for n, v in values.items())
            problems.append(f"{what} differs ({key}): {listed}")
    splits: dict[str, SplitData] = {}
    for split in SCORED_SPLITS:
        ref_rows = ref.frame[ref.frame["split"] == split]
        if ref_rows.empty:
            problems.append(f"{ref.kind} {ref.name!r} has no {split} images")
            continue
        ref_ids = ref_rows["image_id"].to_numpy(dtype=str)
        ref_set = set(ref_ids)
        ref_y = ref_rows["y"].to_numpy()
        probs = np.empty((ref_ids.size, len(loaded)))
        subject = None
        for j, m in enumerate(loaded):
            rows = m.frame[m.frame["split"] == split].set_index("image_id")
            if j > 0:
                ids = set(rows.index)
                if ids != ref_set:
                    gone, extra = ref_set - ids, ids - ref_set
                    msg = (f"{m.kind} {m.name!r} has {len(ids):,} {split} images, {ref.kind} "
                           f"{ref.name!r} {len(ref_set):,}")
                    if gone:
                        msg += (f"; {len(gone):,} {split} images of {ref.name!r} are missing from "
                                f"{m.name!r}: {_fmt_ids(gone)}")
                    if extra:
                        msg += (f"; {len(extra):,} {split} images of {m.name!r} are not in "
                                f"{ref.name!r}: {_fmt_ids(extra)}")
                    problems.append(msg)
                    continue
            rows = rows.loc[ref_ids]
            if j > 0:
                diff = rows["y"].to_numpy() != ref_y
                if diff.any():
                    pairs = zip(ref_ids[diff], ref_y[diff], rows["y"].to_numpy()[diff])
                    shown = ", ".join(f"{i} ({ref.name}: {a}, {m.name}: {b})"
                                      for i, a, b in list(pairs)[:5])
                    problems.append(f"{m.name!r} labels {int(diff.sum()):,} {split} images "
                                    f"differently from {ref.name!r}: {shown}")
            if "subject" in rows.columns and rows["subject"].notna().all():
                subj = rows["subject"].to_numpy(dtype=str)
                if subject is None:
                    subject = subj
                elif (subj != subject).any():
                    n_bad = int((subj != subject).sum())
                    problems.append(f"{m.name!r} gives other subjects than the members before it "
                                    f"for {n_bad:,} {split} images, e.g. "
                                    f"{_fmt_ids(ref_ids[subj != subject])}")
            probs[:, j] = rows["prob"].to_numpy()
        splits[split] = SplitData(ref_ids, ref_y.astype(np.int8), subject, probs)
    if problems:
        raise RunError(
            f"Cannot align {len(loaded)} runs ({', '.join(names)}): they must be scored on the "
            "same images, labels, split protocol and dataset; never silently intersected.\n- "
            + "\n- ".join(problems)
        )
    return AlignedPredictions(
        members=names,
        paths=[m.path for m in loaded],
        kinds=[m.kind for m in loaded],
        thresholds=[m.threshold for m in loaded],
        split_protocol=str(ref.config["split_protocol"]),
        dataset_fingerprint=str(ref.config["dataset_fingerprint"]),
        splits=splits,
    )
