"""Error analysis of several models on the same images (paper 3.4.1, and past it).

Everything starts from the correctness matrix (image x model, True where the model is right):

- :func:`miss_histogram`: images by how many models miss them (the paper's figure 33), by class;
- :func:`miss_intersections`: every intersection of the "missed by model m" sets with its size
  and its images (the data of an UpSet chart);
- :func:`unique_correct` / :func:`unique_wrong`: images only one model gets right / wrong;
- :func:`per_class_breakdown`: each model's errors on HEM and ALL images;
- :func:`pairwise_diversity`: Q statistic, correlation, disagreement, double fault and Cohen's
  kappa for every pair of models (Kuncheva & Whitaker 2003).

:func:`analyse_errors` runs them all on aligned runs (:func:`cnmc_core.ensemble.align_runs`) and
:func:`format_error_summary` prints the summary of ``python -m cnmc_core errors``.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd

from cnmc_core.exceptions import CnmcError

__all__ = [
    "correctness_matrix",
    "miss_histogram",
    "miss_intersections",
    "unique_correct",
    "unique_wrong",
    "per_class_breakdown",
    "pairwise_diversity",
    "analyse_errors",
    "format_error_summary",
]


def correctness_matrix(
    y,
    probs,
    thresholds: float | Sequence[float] = 0.5,
    image_ids: Sequence[str] | None = None,
    model_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Image x model boolean frame: True where ``(prob >= threshold) == y``.

    Args:
        y: (n,) labels, 1 ALL / 0 HEM.
        probs: (n, m) P(ALL) of each model.
        thresholds: one for all models or one per model.
        image_ids: the index (default ``0..n-1``); model_names: the columns (default ``m0..``).
    """
    y = np.asarray(y)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or y.ndim != 1 or probs.shape[0] != y.size:
        raise CnmcError(
            f"Expected y of shape (n,) and probs of shape (n, n_models); got {y.shape} and "
            f"{probs.shape}."
        )
    if not np.isin(y, (0, 1)).all():
        raise CnmcError("y must hold only 0 (HEM) and 1 (ALL).")
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (probs.shape[1],))
    m = probs.shape[1]
    names = list(model_names) if model_names is not None else [f"m{j}" for j in range(m)]
    if len(names) != probs.shape[1] or len(set(names)) != len(names):
        raise CnmcError(f"model_names must be {probs.shape[1]} distinct names; got {names!r}.")
    index = pd.Index(list(image_ids) if image_ids is not None else range(y.size), name="image_id")
    correct = (probs >= t[None, :]) == y.astype(bool)[:, None]
    return pd.DataFrame(correct, index=index, columns=names)


def _check_correct(correct: pd.DataFrame) -> np.ndarray:
    if not isinstance(correct, pd.DataFrame) or correct.shape[1] < 1:
        raise CnmcError("Expected the correctness matrix as a DataFrame (image x model).")
    values = correct.to_numpy()
    if values.dtype != bool:
        raise CnmcError("The correctness matrix must be boolean (True where the model is right).")
    return values


def miss_histogram(correct: pd.DataFrame, y=None) -> pd.DataFrame:
    """Images by the number of models that miss them (0..m): columns ``images`` and, with
    ``y``, ``hem`` and ``all``."""
    values = _check_correct(correct)
    k = (~values).sum(axis=1)
    m = values.shape[1]
    out = pd.DataFrame({"images": np.bincount(k, minlength=m + 1)},
                       index=pd.Index(range(m + 1), name="n_models_missing"))
    if y is not None:
        y = np.asarray(y)
        out["hem"] = np.bincount(k[y == 0], minlength=m + 1)
        out["all"] = np.bincount(k[y == 1], minlength=m + 1)
    return out


def miss_intersections(correct: pd.DataFrame, y=None, include_empty: bool = False) -> pd.DataFrame:
    """Every intersection of the "missed by model m" sets (UpSet data).

    One row per non-empty set S of models: one boolean column per model (membership in S),
    ``degree`` (|S|), ``size`` (images missed by exactly the models of S: the UpSet bar),
    ``inclusive_size`` (images missed by at least the models of S), with ``y`` also ``hem`` and
    ``all`` (of ``size``), and ``images`` (the ids of the exact intersection). Sorted by size,
    largest first; rows of size 0 only with ``include_empty`` (2**m - 1 rows then).
    """
    values = _check_correct(correct)
    names = list(correct.columns)
    m = len(names)
    if m > 16:
        raise CnmcError(
            f"Intersections of {m} models would be {2 ** m - 1:,} sets; use 16 models or fewer."
        )
    miss = ~values
    code = miss.astype(np.int64) @ (1 << np.arange(m))
    ids = np.asarray(correct.index)
    y = None if y is None else np.asarray(y)
    rows = []
    order = np.argsort(code, kind="stable")
    starts = np.searchsorted(code[order], np.arange(1 << m))
    ends = np.searchsorted(code[order], np.arange(1 << m), side="right")
    # "missed by at least S" = sum of the exact counts of the supersets of S (superset-sum
    # transform: O(2**m * m) instead of a pass over the images per set).
    inclusive = np.bincount(code, minlength=1 << m)
    sets = np.arange(1 << m)
    for j in range(m):
        without = sets[(sets >> j) & 1 == 0]
        inclusive[without] += inclusive[without | (1 << j)]
    for s in range(1, 1 << m):
        exact = order[starts[s]:ends[s]]
        if exact.size == 0 and not include_empty:
            continue
        members = [(s >> j) & 1 == 1 for j in range(m)]
        row = dict(zip(names, members))
        row["degree"] = sum(members)
        row["size"] = int(exact.size)
        row["inclusive_size"] = int(inclusive[s])
        if y is not None:
            row["hem"] = int((y[exact] == 0).sum())
            row["all"] = int((y[exact] == 1).sum())
        row["images"] = ids[np.sort(exact)].tolist()
        rows.append(row)
    cols = [*names, "degree", "size", "inclusive_size", *(["hem", "all"] if y is not None else []),
            "images"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["size", "degree"], ascending=[False, True], kind="stable") \
        .reset_index(drop=True)


def unique_correct(correct: pd.DataFrame) -> dict[str, list]:
    """For each model, the images it alone gets right (every other model misses them)."""
    values = _check_correct(correct)
    only = values & (values.sum(axis=1) == 1)[:, None]
    return {name: correct.index[only[:, j]].tolist() for j, name in enumerate(correct.columns)}


def unique_wrong(correct: pd.DataFrame) -> dict[str, list]:
    """For each model, the images it alone gets wrong (every other model is right)."""
    values = _check_correct(correct)
    only = ~values & ((~values).sum(axis=1) == 1)[:, None]
    return {name: correct.index[only[:, j]].tolist() for j, name in enumerate(correct.columns)}


def per_class_breakdown(correct: pd.DataFrame, y) -> pd.DataFrame:
    """Per model: errors and error rate on HEM and ALL images, and in all."""
    values = _check_correct(correct)
    y = np.asarray(y)
    miss = ~values
    hem, pos = y == 0, y == 1
    n_hem, n_all = int(hem.sum()), int(pos.sum())
    out = pd.DataFrame({
        "errors": miss.sum(axis=0),
        "errors_hem": miss[hem].sum(axis=0),
        "errors_all": miss[pos].sum(axis=0),
    }, index=pd.Index(correct.columns, name="model"))
    out["error_rate"] = out["errors"] / max(y.size, 1)
    out["error_rate_hem"] = out["errors_hem"] / n_hem if n_hem else np.nan
    out["error_rate_all"] = out["errors_all"] / n_all if n_all else np.nan
    return out


def _ratio(num, den):
    return float(num / den) if den != 0 else float("nan")


def pairwise_diversity(correct: pd.DataFrame, y=None) -> pd.DataFrame:
    """Diversity of every pair of models from their oracle outputs (right/wrong).

    With N11 both right, N00 both wrong, N10 only the first right, N01 only the second:
    ``q`` = (N11 N00 - N01 N10) / (N11 N00 + N01 N10); ``correlation`` = the same numerator /
    sqrt((N11+N10)(N01+N00)(N11+N01)(N10+N00)); ``disagreement`` = (N01+N10)/N;
    ``double_fault`` = N00/N. With ``y``, ``kappa`` is Cohen's kappa between the two models'
    predicted labels (as ``sklearn.metrics.cohen_kappa_score``). Undefined values are NaN.
    """
    values = _check_correct(correct)
    names = list(correct.columns)
    n = values.shape[0]
    rows = []
    for i, j in combinations(range(len(names)), 2):
        a, b = values[:, i], values[:, j]
        n11, n00 = int((a & b).sum()), int((~a & ~b).sum())
        n10, n01 = int((a & ~b).sum()), int((~a & b).sum())
        num = n11 * n00 - n01 * n10
        row = {
            "model_a": names[i], "model_b": names[j],
            "n11": n11, "n10": n10, "n01": n01, "n00": n00,
            "q": _ratio(num, n11 * n00 + n01 * n10),
            "correlation": _ratio(num, np.sqrt(float(n11 + n10) * (n01 + n00) * (n11 + n01)
                                               * (n10 + n00))),
            "disagreement": _ratio(n01 + n10, n),
            "double_fault": _ratio(n00, n),
        }
        if y is not None:
            yb = np.asarray(y).astype(bool)
            pa, pb = np.where(a, yb, ~yb), np.where(b, yb, ~yb)  # predicted ALL
            po = float(np.mean(pa == pb))
            pe = float(pa.mean() * pb.mean() + (1 - pa.mean()) * (1 - pb.mean()))
            row["kappa"] = _ratio(po - pe, 1 - pe)
        rows.append(row)
    return pd.DataFrame(rows)


def analyse_errors(aligned, split: str = "test", thresholds: float | Sequence[float] | None = None
                   ) -> dict:
    """All of the above on one split of aligned runs.

    Args:
        aligned: :class:`cnmc_core.ensemble.AlignedPredictions`.
        split: ``"test"`` or ``"val"``.
        thresholds: one for all members, one per member, or None for each member's own
            (its config's ``threshold``, else 0.5).

    Returns:
        dict with ``members``, ``split``, ``thresholds``, ``n``, ``n_hem``, ``n_all``,
        ``correct`` (DataFrame), ``histogram``, ``intersections``, ``unique_correct``,
        ``unique_wrong``, ``per_class``, ``diversity``.
    """
    if split not in aligned.splits:
        raise CnmcError(f"split must be one of {sorted(aligned.splits)}; got {split!r} instead.")
    data = aligned.splits[split]
    t = aligned.thresholds if thresholds is None else thresholds
    correct = correctness_matrix(data.y, data.probs, t, data.image_id, aligned.members)
    return {
        "members": list(aligned.members),
        "split": split,
        "protocol": aligned.split_protocol,
        "thresholds": np.broadcast_to(np.asarray(t, float), (len(aligned.members),)).tolist(),
        "n": int(data.y.size), "n_hem": int((data.y == 0).sum()), "n_all": int(data.y.sum()),
        "correct": correct,
        "histogram": miss_histogram(correct, data.y),
        "intersections": miss_intersections(correct, data.y),
        "unique_correct": unique_correct(correct),
        "unique_wrong": unique_wrong(correct),
        "per_class": per_class_breakdown(correct, data.y),
        "diversity": pairwise_diversity(correct, data.y),
    }


def format_error_summary(report: dict, top: int = 10) -> str:
    """The overlap summary printed by ``python -m cnmc_core errors``."""
    m = len(report["members"])
    lines = [
        f"{report['split']} split: {report['n']:,} images ({report['n_hem']:,} HEM, "
        f"{report['n_all']:,} ALL), {m} models, protocol {report['protocol']}",
        "",
        "errors per model:",
    ]
    pc = report["per_class"]
    for name, r in pc.iterrows():
        lines.append(f"  {name}: {int(r['errors']):,} wrong ({r['error_rate']:.2%}); "
                     f"HEM {int(r['errors_hem']):,}, ALL {int(r['errors_all']):,}")
    lines += ["", "images by number of models that miss them:"]
    for k, r in report["histogram"].iterrows():
        lines.append(f"  {k} of {m}: {int(r['images']):,} (HEM {int(r['hem']):,}, "
                     f"ALL {int(r['all']):,})")
    lines += ["", f"largest intersections of missed sets (exactly these models wrong; top {top}):"]
    for _, r in report["intersections"].head(top).iterrows():
        who = " & ".join(n for n in report["members"] if r[n])
        lines.append(f"  {who}: {int(r['size']):,} (HEM {int(r['hem']):,}, ALL {int(r['all']):,})")
    lines += ["", "images only one model gets right / wrong:"]
    for name in report["members"]:
        lines.append(f"  {name}: only right on {len(report['unique_correct'][name]):,}, "
                     f"only wrong on {len(report['unique_wrong'][name]):,}")
    lines += ["", "pairwise diversity (Q, correlation, disagreement, double fault, kappa):"]
    for _, r in report["diversity"].iterrows():
        lines.append(f"  {r['model_a']} vs {r['model_b']}: Q={r['q']:.3f} "
                     f"rho={r['correlation']:.3f} dis={r['disagreement']:.3f} df={r['double_fault']:.3f} "
                     f"kappa={r['kappa']:.3f}")
    return "\n".join(lines)
