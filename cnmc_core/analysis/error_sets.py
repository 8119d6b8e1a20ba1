"""Sets of images picked on the Errors page, and the gallery rows that show them.

:mod:`cnmc_core.analysis.errors` computes the overlap of the members' errors; this module turns a
user's choice into a set of images and back into what a gallery shows:

- :func:`filter_class` keeps the HEM or the ALL images of one split of aligned runs (the class
  filter), so every count and chart of the page is of that class;
- :class:`ErrorSet` names a set (``"missed by exactly 2 models"``, ``"only scratch-f0e6
  wrong"``...) and holds its image ids; :func:`histogram_set`, :func:`intersection_set` and
  :func:`unique_set` build them from an :func:`~cnmc_core.analysis.errors.analyse_errors` report;
- :func:`gallery_rows` gives, per image, its true class, each member's P(ALL) and whether each
  member is right, in a fixed order (the errors of most models first).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import pandas as pd

from cnmc_core.contracts import CLASS_SHORT
from cnmc_core.ensemble.align import AlignedPredictions, SplitData
from cnmc_core.exceptions import ConfigError

__all__ = [
    "CLASS_FILTERS",
    "ErrorSet",
    "filter_class",
    "histogram_set",
    "intersection_set",
    "unique_set",
    "gallery_rows",
]

#: The class filter's choices: every image, the normal cells only, the cancer cells only.
CLASS_FILTERS = ("both", "hem", "all")


@dataclass
class ErrorSet:
    """A named set of images of one split (what a gallery or the Explain page shows)."""

    title: str
    split: str
    image_ids: list[str]
    members: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain data (for ``st.session_state`` or JSON)."""
        return {"title": self.title, "split": self.split, "image_ids": list(self.image_ids),
                "members": list(self.members)}


def filter_class(aligned: AlignedPredictions, split: str, cls: str) -> AlignedPredictions:
    """A copy of ``aligned`` whose ``split`` holds only HEM (``cls="hem"``) or only ALL
    (``"all"``) images; ``"both"`` returns ``aligned`` unchanged.

    Raises:
        ConfigError: an unknown class or split.
    """
    if cls not in CLASS_FILTERS:
        raise ConfigError(f"The class filter must be one of {list(CLASS_FILTERS)}. Got {cls!r} "
                          "instead.")
    if split not in aligned.splits:
        raise ConfigError(f"split must be one of {sorted(aligned.splits)}; got {split!r}.")
    if cls == "both":
        return aligned
    data = aligned.splits[split]
    keep = data.y == (1 if cls == "all" else 0)
    sub = SplitData(data.image_id[keep], data.y[keep],
                    None if data.subject is None else data.subject[keep], data.probs[keep])
    return replace(aligned, splits={**aligned.splits, split: sub})


def histogram_set(report: dict, n_missing: int) -> ErrorSet:
    """Images missed by exactly ``n_missing`` of the report's models."""
    correct = report["correct"]
    m = correct.shape[1]
    if not 0 <= int(n_missing) <= m:
        raise ConfigError(f"n_missing must be between 0 and {m}; got {n_missing!r}.")
    k = (~correct.to_numpy()).sum(axis=1)
    ids = correct.index[k == int(n_missing)].astype(str).tolist()
    what = {0: "missed by no model", m: f"missed by all {m} models"}.get(
        int(n_missing), f"missed by exactly {int(n_missing)} of {m} models")
    return ErrorSet(what, report["split"], ids, list(report["members"]))


def intersection_set(report: dict, row: int, labels: dict[str, str] | None = None) -> ErrorSet:
    """The images of row ``row`` of ``report["intersections"]``: missed by exactly its models."""
    inter = report["intersections"]
    if not 0 <= int(row) < len(inter):
        raise ConfigError(f"row must be between 0 and {len(inter) - 1}; got {row!r}.")
    r = inter.iloc[int(row)]
    labels = labels or {}
    who = [labels.get(n, n) for n in report["members"] if bool(r[n])]
    title = ("missed only by " if len(who) < len(report["members"]) else "missed by all: ") + \
        " & ".join(who)
    return ErrorSet(title, report["split"], [str(i) for i in r["images"]],
                    list(report["members"]))


def unique_set(report: dict, member: str, right: bool,
               labels: dict[str, str] | None = None) -> ErrorSet:
    """The images that only ``member`` gets right (``right=True``) or only it gets wrong."""
    table = report["unique_correct" if right else "unique_wrong"]
    if member not in table:
        raise ConfigError(f"member must be one of {list(table)}; got {member!r}.")
    name = (labels or {}).get(member, member)
    title = f"that only {name} gets {'right' if right else 'wrong'}"
    return ErrorSet(title, report["split"], [str(i) for i in table[member]],
                    list(report["members"]))


def gallery_rows(aligned: AlignedPredictions, split: str, image_ids: Sequence[str],
                 thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """One row per image of ``image_ids`` (in ``split``): ``image_id``, ``y``, ``true`` (``HEM``
    / ``ALL``), ``n_wrong``, and per member ``prob:<member>`` and ``right:<member>``; sorted by
    the number of members that miss it (most first), then by image id. Unknown ids are skipped.
    """
    data = aligned.splits[split]
    t = np.broadcast_to(np.asarray(aligned.thresholds if thresholds is None else thresholds,
                                   dtype=np.float64), (len(aligned.members),))
    pos = {str(i): k for k, i in enumerate(data.image_id)}
    idx = np.array([pos[str(i)] for i in image_ids if str(i) in pos], dtype=np.int64)
    probs = data.probs[idx]
    y = data.y[idx]
    right = (probs >= t[None, :]) == y.astype(bool)[:, None]
    frame = pd.DataFrame({"image_id": data.image_id[idx].astype(str), "y": y.astype(int),
                          "true": np.where(y == 1, CLASS_SHORT["all"], CLASS_SHORT["hem"]),
                          "n_wrong": (~right).sum(axis=1).astype(int)})
    for j, member in enumerate(aligned.members):
        frame[f"prob:{member}"] = probs[:, j]
        frame[f"right:{member}"] = right[:, j]
    return frame.sort_values(["n_wrong", "image_id"], ascending=[False, True],
                             kind="stable").reset_index(drop=True)
