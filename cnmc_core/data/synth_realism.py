"""How close a synthetic dataset is to the real samples, in the eight hand features.

One comparison serves the ``synth --report`` verb, ``benchmarks/bench_synth.py`` and the tests:
the features of :mod:`cnmc_core.data.cell_features` on a sample of the synthetic images and on the
real samples, per class, for the half of the real samples the generator was calibrated on
(``fit``), the other half (``held_out``) and all of them; plus how well the features tell the
classes apart (single-feature AUCs and a logistic regression with subject-grouped CV), the
figures that say whether the class signal sits where it does in real cells.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnmc_core.data.cell_features import (
    FEATURE_NAMES,
    FIT_HALF,
    HELD_OUT_HALF,
    features_of_files,
    real_sample_halves,
)
from cnmc_core.exceptions import DataError

__all__ = [
    "default_real_samples",
    "FeatureTable",
    "synthetic_table",
    "real_tables",
    "class_stats",
    "feature_aucs",
    "grouped_lr_auc",
    "realism_report",
    "format_report",
]


def default_real_samples() -> Path:
    """Where the real samples are: ``$CNMC_REAL_SAMPLES``, else ``../shared/real-samples``
    beside the repository (they are never copied into it)."""
    env = os.environ.get("CNMC_REAL_SAMPLES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "real-samples"


@dataclass
class FeatureTable:
    """Hand features of a set of cell images.

    Attributes:
        X: ``(n, 8)`` features, columns in :data:`FEATURE_NAMES` order.
        y: 1 for ALL, 0 for HEM.
        groups: the subject of each image.
        paths: the image files.
    """

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)


def synthetic_table(root: str | os.PathLike, per_class: int | None = None, seed: int = 0) -> FeatureTable:
    """Features of the labelled images of a dataset (training folds and preliminary set).

    Args:
        root: a dataset folder (any layout :func:`cnmc_core.data.manifest.scan_dataset` reads).
        per_class: at most this many images per class, drawn at random (``None``: all).
        seed: the draw of the subsample.

    Raises:
        DataError: no labelled image, or an unreadable one.
    """
    import pandas as pd

    from cnmc_core.data.manifest import scan_dataset

    manifest = scan_dataset(root, verify=False).manifest
    manifest = manifest[manifest["y"] >= 0].sort_values("image_id", kind="stable")
    if manifest.empty or manifest["y"].nunique() < 2:
        raise DataError(f"{root} has no labelled images of both classes; give a dataset folder "
                        "(e.g. the OUT of `python -m cnmc_core synth OUT`).")
    if per_class is not None:
        rng = np.random.default_rng(seed)
        parts = []
        for _, part in manifest.groupby("y", sort=True):
            take = min(per_class, len(part))
            parts.append(part.iloc[np.sort(rng.choice(len(part), take, replace=False))])
        manifest = pd.concat(parts)
    paths = manifest["path"].tolist()
    return FeatureTable(X=features_of_files(paths), y=manifest["y"].to_numpy(int),
                        groups=manifest["subject"].to_numpy(str), paths=paths)


def real_tables(folder: str | os.PathLike) -> dict[str, FeatureTable]:
    """Features of the real samples: ``{"fit": ..., "held_out": ..., "all": ...}``.

    Raises:
        DataError: the folder is missing or holds no usable samples.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"real samples folder {folder} does not exist; pass the folder that holds "
                        "all/ and hem/ (../shared/real-samples) with --real DIR.")
    halves = real_sample_halves(folder)
    out: dict[str, FeatureTable] = {}
    for name, rows in ((FIT_HALF, halves[FIT_HALF]), (HELD_OUT_HALF, halves[HELD_OUT_HALF]),
                       ("all", halves[FIT_HALF] + halves[HELD_OUT_HALF])):
        if not rows:
            raise DataError(f"no real samples in {folder} ({name}); expected all/*.bmp and hem/*.bmp.")
        out[name] = FeatureTable(X=features_of_files([p for p, _, _ in rows]),
                                 y=np.array([y for _, y, _ in rows], int),
                                 groups=np.array([s for _, _, s in rows], str),
                                 paths=[str(p) for p, _, _ in rows])
    return out


def class_stats(table: FeatureTable) -> dict[str, dict[str, dict[str, float]]]:
    """``{class: {feature: {"mean", "sd", "n"}}}`` with class ``"all"`` / ``"hem"`` (sd with ddof 1)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for cls, yv in (("all", 1), ("hem", 0)):
        rows = table.X[table.y == yv]
        out[cls] = {name: {"mean": float(rows[:, i].mean()) if len(rows) else float("nan"),
                           "sd": float(rows[:, i].std(ddof=1)) if len(rows) > 1 else float("nan"),
                           "n": int(len(rows))}
                    for i, name in enumerate(FEATURE_NAMES)}
    return out


def feature_aucs(table: FeatureTable) -> dict[str, float]:
    """Each feature's ROC AUC for ALL (y = 1) as it stands: above 0.5 when ALL has larger values."""
    from sklearn.metrics import roc_auc_score

    return {name: float(roc_auc_score(table.y, table.X[:, i])) for i, name in enumerate(FEATURE_NAMES)}


def grouped_lr_auc(table: FeatureTable, folds: int = 5, seed: int = 0) -> float:
    """Pooled out-of-fold AUC of a standardised logistic regression on the eight features.

    Folds are grouped by subject (``StratifiedGroupKFold``), so no subject is in a training and a
    test fold at once; fewer folds are used when there are too few subjects of a class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_subj = min(len(set(table.groups[table.y == c])) for c in (0, 1))
    folds = max(2, min(folds, n_subj))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    prob = cross_val_predict(model, table.X, table.y, groups=table.groups, cv=cv,
                             method="predict_proba")[:, 1]
    return float(roc_auc_score(table.y, prob))


def realism_report(synthetic: FeatureTable, real: dict[str, FeatureTable]) -> dict:
    """Everything the report and the benchmark print, as a JSON-friendly dict.

    Args:
        synthetic: from :func:`synthetic_table`.
        real: from :func:`real_tables`.

    Returns:
        ``{"fitted_on", "held_out", "n", "stats": {set: class_stats}, "aucs": {set: ...},
        "lr_auc": {set: ...}}`` with sets ``synthetic``, ``fit``, ``held_out`` and ``all``.
    """
    sets = {"synthetic": synthetic, **real}
    return {
        "fitted_on": FIT_HALF,
        "held_out": HELD_OUT_HALF,
        "n": {k: {"all": int((t.y == 1).sum()), "hem": int((t.y == 0).sum()),
                  "subjects": int(len(set(t.groups)))} for k, t in sets.items()},
        "stats": {k: class_stats(t) for k, t in sets.items()},
        "aucs": {k: feature_aucs(t) for k, t in sets.items()},
        "lr_auc": {k: grouped_lr_auc(t) for k, t in sets.items()},
    }


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"


def format_report(report: dict) -> str:
    """The report as aligned text: per class and feature, mean and sd of synthetic vs each half."""
    n = report["n"]
    lines = [
        "Realism of the synthetic cells: 8 hand features (cnmc_core.data.cell_features), "
        "mean / sd per class.",
        f"The generator was calibrated on the '{report['fitted_on']}' half of the real samples "
        f"({n['fit']['all']} ALL + {n['fit']['hem']} HEM, {n['fit']['subjects']} subjects); the "
        f"'{report['held_out']}' half ({n['held_out']['all']} ALL + {n['held_out']['hem']} HEM, "
        f"{n['held_out']['subjects']} subjects) was never used for fitting.",
        f"synthetic: {n['synthetic']['all']} ALL + {n['synthetic']['hem']} HEM images, "
        f"{n['synthetic']['subjects']} subjects.",
        "",
    ]
    cols = ("synthetic", "fit", "held_out", "all")
    head = f"{'class':<5} {'feature':<12}" + "".join(f" {c + ' mean/sd':>22}" for c in cols)
    lines.append(head)
    for cls in ("all", "hem"):
        for name in FEATURE_NAMES:
            cells = []
            for c in cols:
                s = report["stats"][c][cls][name]
                cells.append(f" {_fmt(s['mean']) + ' / ' + _fmt(s['sd']):>22}")
            lines.append(f"{cls.upper():<5} {name:<12}" + "".join(cells))
    lines.append("")
    lines.append(f"{'AUC of each feature for ALL':<30}" + "".join(f" {c:>10}" for c in cols))
    for name in FEATURE_NAMES:
        lines.append(f"  {name:<28}" + "".join(f" {report['aucs'][c][name]:>10.3f}" for c in cols))
    lines.append(f"  {'8 features, LR, grouped CV':<28}"
                 + "".join(f" {report['lr_auc'][c]:>10.3f}" for c in cols))
    lines.append("('all' = both halves of the real samples together; on 10-20 real images per "
                 "class an sd or AUC is uncertain by about +-25 % or +-0.1.)")
    return "\n".join(lines)
