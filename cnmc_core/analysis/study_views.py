"""What the Compare page shows of a study: the preset table with CIs as text, the per-fold dots,
and the paired matrix (row minus column), built from a study's results
(:func:`cnmc_core.study.results.read_results`) through :mod:`cnmc_core.study.report`.

Undecided comparisons show the library's reason ("cannot be decided: ...") instead of a number.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from cnmc_core.analysis.run_charts import run_color
from cnmc_core.study.report import fold_points, paired_matrix, preset_table

__all__ = [
    "STUDY_METRIC_NAMES",
    "fold_dots_figure",
    "paired_matrix_display",
    "paired_pairs_display",
    "study_preset_display",
]

#: The metrics a study compares, as the page names them.
STUDY_METRIC_NAMES = {"roc_auc": "AUC", "weighted_f1": "weighted F1"}


def _missing(x) -> bool:
    return x is None or bool(pd.isna(x))


def _f(x, nd: int = 3) -> str:
    return "-" if _missing(x) else f"{x:.{nd}f}"


def _ci(value, low, high, nd: int = 3) -> str:
    if _missing(value):
        return "-"
    return f"{_f(value, nd)} [{_f(low, nd)}, {_f(high, nd)}]"


def study_preset_display(results: dict) -> pd.DataFrame:
    """One row per preset, then per ensemble method fitted per fold: ``preset``, ``kind``,
    ``pooled OOF AUC [95% CI]``, ``pooled OOF wF1 [95% CI]`` (over every subject, class-stratified
    subject bootstrap), ``AUC folds mean ± sd``, ``wF1 folds mean ± sd``, ``subjects``,
    ``images``."""
    table = preset_table(results)
    if table.empty:
        return pd.DataFrame(columns=["preset", "kind", "pooled OOF AUC [95% CI]",
                                     "pooled OOF wF1 [95% CI]", "AUC folds mean ± sd",
                                     "wF1 folds mean ± sd", "subjects", "images"])
    return pd.DataFrame({
        "preset": table["name"], "kind": table["kind"],
        "pooled OOF AUC [95% CI]": [_ci(*v) for v in zip(table["auc"], table["auc_low"],
                                                         table["auc_high"])],
        "pooled OOF wF1 [95% CI]": [_ci(*v) for v in zip(table["wf1"], table["wf1_low"],
                                                         table["wf1_high"])],
        "AUC folds mean ± sd": [f"{_f(m)} ± {_f(s)}" for m, s in
                                zip(table["auc_fold_mean"], table["auc_fold_sd"])],
        "wF1 folds mean ± sd": [f"{_f(m)} ± {_f(s)}" for m, s in
                                zip(table["wf1_fold_mean"], table["wf1_fold_sd"])],
        "subjects": table["n_subjects"], "images": table["n_images"],
    })


def fold_dots_figure(results: dict, metric: str = "roc_auc", ensembles: bool = True) -> go.Figure:
    """Every fold's (and seed's) test score of each preset as a dot, the pooled out-of-fold score
    as a diamond: one row per preset (and ensemble method), each in its own colour."""
    points = fold_points(results, ensembles=ensembles)
    table = preset_table(results, ensembles=ensembles)
    column = "auc" if metric == "roc_auc" else "wf1"
    fig = go.Figure()
    for name in table["name"]:
        part = points[points["name"] == name]
        color = run_color(name)
        fig.add_trace(go.Scatter(
            x=part[metric], y=[name] * len(part), mode="markers", name=f"{name}: folds",
            marker={"size": 10, "color": color, "opacity": 0.75},
            customdata=part[["fold", "seed"]].to_numpy(),
            hovertemplate="%{y}<br>fold %{customdata[0]}, seed %{customdata[1]}: %{x:.3f}"
                          "<extra></extra>"))
        pooled = table.loc[table["name"] == name, column].iloc[0]
        fig.add_trace(go.Scatter(
            x=[pooled], y=[name], mode="markers", name=f"{name}: pooled",
            marker={"size": 14, "symbol": "diamond-open", "color": color, "line": {"width": 2}},
            hovertemplate="%{y}<br>pooled out of fold: %{x:.3f}<extra></extra>"))
    label = STUDY_METRIC_NAMES.get(metric, metric)
    fig.update_layout(showlegend=False, height=90 + 46 * max(1, len(table)),
                      margin={"l": 10, "r": 10, "t": 40, "b": 40},
                      title=f"test {label} of each fold (dots) and pooled out of fold (diamond)")
    fig.update_xaxes(title=f"test {label}")
    fig.update_yaxes(autorange="reversed")
    return fig


def _cell(row) -> str:
    if _missing(row.p):
        reason = row.verdict.removeprefix("undecided: ")
        return f"cannot be decided: {reason}"
    return f"{row.diff:+.3f} [{row.low:+.3f}, {row.high:+.3f}], p={row.p:.3f}"


def paired_matrix_display(results: dict, metric: str = "roc_auc",
                          ensembles: bool = False) -> pd.DataFrame:
    """Is the row better than the column? A square table over the presets (or the ensemble
    methods): each cell the mean per-fold difference row - column with its corrected 95% CI and
    the corrected resampled t-test's p, or "cannot be decided: <why>"; the diagonal is empty."""
    matrix = paired_matrix(results, metric, ensembles=ensembles)
    names = list(dict.fromkeys([*matrix["a"], *matrix["b"]]))
    out = pd.DataFrame("", index=pd.Index(names, name="row - column"), columns=names)
    for row in matrix.itertuples():
        out.loc[row.a, row.b] = _cell(row)
    for name in names:
        out.loc[name, name] = "-"
    return out


def paired_pairs_display(results: dict, metric: str = "roc_auc",
                         ensembles: bool = False) -> pd.DataFrame:
    """Each pair once (A before B by name): ``A``, ``B``, ``per-fold A - B [95% CI]``, ``p``
    (corrected t-test), ``pooled A - B [95% CI]`` (paired subject bootstrap), ``verdict``."""
    matrix = paired_matrix(results, metric, ensembles=ensembles)
    matrix = matrix[matrix["a"] < matrix["b"]]
    return pd.DataFrame({
        "A": matrix["a"], "B": matrix["b"],
        "per-fold A - B [95% CI]": [
            "cannot be decided" if _missing(p) else _ci(d, lo, hi)
            for d, lo, hi, p in zip(matrix["diff"], matrix["low"], matrix["high"], matrix["p"])],
        "p": [_f(p) for p in matrix["p"]],
        "pooled A - B [95% CI]": [_ci(*v) for v in zip(matrix["pooled"], matrix["pooled_low"],
                                                       matrix["pooled_high"])],
        "verdict": matrix["verdict"],
    }).reset_index(drop=True)
