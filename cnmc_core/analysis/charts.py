"""Plotly figures of the analysis pages (Errors, Ensemble), and reading clicks on them back.

Figures are built here, from the library's tables, so that tests can check them without a
browser; pages only pass them to ``st.plotly_chart``. Every clickable trace carries the key of
what it stands for in ``customdata`` (a histogram bar: the number of models missing; an UpSet
bar or dot: the row of the intersections table); :func:`selected_keys` reads those keys back
from the selection state that ``st.plotly_chart(..., on_select="rerun")`` returns.

The UpSet chart is drawn with plotly: UpSetPlot 0.9 fails on pandas 3 and numpy 2.4.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnmc_core.contracts import CLASS_SHORT, CLASS_TITLES, CLASSES

__all__ = [
    "CLASS_COLORS",
    "DIVERSITY_METRICS",
    "miss_histogram_figure",
    "upset_figure",
    "diversity_matrix",
    "diversity_figure",
    "confusion_figure",
    "roc_figure",
    "selected_keys",
]

#: One colour per class everywhere: HEM (normal) blue, ALL (cancer) red.
CLASS_COLORS = {"hem": "#4C78A8", "all": "#E45756"}
_DOT_ON, _DOT_OFF = "#303030", "#D9D9D9"
#: Pairwise diversity measures: column of :func:`cnmc_core.analysis.errors.pairwise_diversity`
#: -> (title, value on the diagonal, colour range, True when low means more diverse).
DIVERSITY_METRICS = {
    "q": ("Yule's Q statistic", 1.0, (-1.0, 1.0), True),
    "correlation": ("correlation of errors", 1.0, (-1.0, 1.0), True),
    "disagreement": ("disagreement", 0.0, (0.0, None), False),
    "double_fault": ("double fault (both wrong)", None, (0.0, None), True),
    "kappa": ("Cohen's kappa of the labels", 1.0, (-1.0, 1.0), True),
}


def _layout(fig: go.Figure, title: str | None, height: int) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=50 if title else 20,
                                                              b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right",
                                  x=1), bargap=0.25, clickmode="event+select")
    return fig


def miss_histogram_figure(histogram: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Stacked bars of images (HEM, ALL) by the number of models that miss them.

    ``histogram`` is :func:`~cnmc_core.analysis.errors.miss_histogram` with ``y`` (columns
    ``hem``, ``all``); each bar's ``customdata`` is its number of models.
    """
    k = histogram.index.to_numpy()
    fig = go.Figure()
    for cls, name in CLASS_TITLES.items():
        fig.add_bar(x=k, y=histogram[cls].to_numpy(), name=name, marker_color=CLASS_COLORS[cls],
                    customdata=k, hovertemplate="%{y} " + name + " images missed by %{x} "
                    "model(s)<extra></extra>")
    total = histogram["hem"].to_numpy() + histogram["all"].to_numpy()
    fig.add_scatter(x=k, y=total, mode="text", text=[f"{t:,}" for t in total],
                    textposition="top center", showlegend=False, hoverinfo="skip",
                    customdata=k)
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="number of models that miss the image", tickmode="array",
                     tickvals=k, ticktext=[str(v) for v in k])
    fig.update_yaxes(title="images", rangemode="tozero",
                     range=[0, max(1, float(total.max()) * 1.15)])
    return _layout(fig, title, 360)


def upset_figure(intersections: pd.DataFrame, members: Sequence[str],
                 errors_per_member: Sequence[int] | None = None,
                 labels: Mapping[str, str] | None = None, top: int = 20,
                 title: str | None = None) -> go.Figure:
    """An UpSet chart of the "missed by model m" sets.

    Top: one stacked bar (HEM, ALL) per intersection (images missed by exactly those models),
    largest first, the first ``top`` only. Below: the dot matrix of which models each bar is;
    left: each model's total errors. Bars and dots carry the intersection's row of
    ``intersections`` (:func:`~cnmc_core.analysis.errors.miss_intersections`) as ``customdata``.
    """
    labels = dict(labels or {})
    names = [labels.get(m, m) for m in members]
    inter = intersections.head(top).reset_index(drop=True)
    n = len(inter)
    m = len(members)
    fig = make_subplots(rows=2, cols=2, shared_xaxes=True, shared_yaxes=True,
                        column_widths=[0.3, 0.7], row_heights=[0.62, 0.38],
                        horizontal_spacing=0.02, vertical_spacing=0.03,
                        specs=[[None, {}], [{}, {}]])
    xs = np.arange(n)
    rows = inter.index.to_numpy()
    if n:
        for cls, cname in CLASS_TITLES.items():
            fig.add_bar(x=xs, y=inter[cls].to_numpy(), name=cname,
                        marker_color=CLASS_COLORS[cls], customdata=rows,
                        hovertemplate="%{y} " + cname + "<extra></extra>", row=1, col=2)
        fig.add_scatter(x=xs, y=inter["size"].to_numpy(), mode="text",
                        text=[f"{s:,}" for s in inter["size"]], textposition="top center",
                        showlegend=False, hoverinfo="skip", customdata=rows, row=1, col=2)
        # Dot matrix: grey dots everywhere, dark dots (joined by a line) for the set's models.
        gx, gy = np.meshgrid(xs, np.arange(m))
        fig.add_scatter(x=gx.ravel(), y=gy.ravel(), mode="markers", showlegend=False,
                        marker=dict(size=12, color=_DOT_OFF), hoverinfo="skip",
                        customdata=np.repeat(rows[None, :], m, axis=0).ravel(), row=2, col=2)
        on = inter[list(members)].to_numpy(dtype=bool)
        lx, ly, dx, dy, dc, hover = [], [], [], [], [], []
        for i in range(n):
            js = np.flatnonzero(on[i])
            who = " & ".join(names[j] for j in js)
            for j in js:
                dx.append(i)
                dy.append(j)
                dc.append(int(rows[i]))
                hover.append(f"missed by exactly: {who}<br>{int(inter['size'][i]):,} images")
            if js.size > 1:
                lx += [i, i, None]
                ly += [int(js.min()), int(js.max()), None]
        if lx:
            fig.add_scatter(x=lx, y=ly, mode="lines", line=dict(color=_DOT_ON, width=3),
                            showlegend=False, hoverinfo="skip", row=2, col=2)
        fig.add_scatter(x=dx, y=dy, mode="markers", showlegend=False, customdata=dc,
                        marker=dict(size=13, color=_DOT_ON), text=hover,
                        hovertemplate="%{text}<extra></extra>", row=2, col=2)
    if errors_per_member is not None:
        err = np.asarray(errors_per_member)
        fig.add_bar(x=err, y=np.arange(m), orientation="h", showlegend=False,
                    marker_color="#7F7F7F", text=[f"{e:,}" for e in err], textposition="outside",
                    cliponaxis=False, hovertemplate="%{x} errors<extra></extra>", row=2, col=1)
        fig.update_xaxes(title="errors per model", row=2, col=1,  # reversed: grows leftwards
                         range=[float(err.max()) * 1.9 if err.size and err.max() > 0 else 1, 0])
    fig.update_yaxes(tickmode="array", tickvals=list(range(m)), ticktext=names,
                     range=[m - 0.5, -0.5], row=2, col=1)
    fig.update_yaxes(showticklabels=False, row=2, col=2)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False,
                     range=[-0.6, max(n, 1) - 0.4], row=2, col=2)
    fig.update_xaxes(showticklabels=False, row=1, col=2)
    top_y = float(inter["size"].max()) if n else 1.0
    fig.update_yaxes(title="images", rangemode="tozero",
                     range=[0, top_y * 1.18], row=1, col=2)
    fig.update_layout(barmode="stack")
    return _layout(fig, title, 300 + 34 * m)


def diversity_matrix(diversity: pd.DataFrame, members: Sequence[str], metric: str
                     ) -> pd.DataFrame:
    """The symmetric ``members x members`` matrix of one pairwise measure (the diagonal is the
    measure of a model with itself: 1 for Q, correlation and kappa, 0 for disagreement, the
    model's own error rate is not known here so double fault's diagonal is NaN)."""
    if metric not in DIVERSITY_METRICS:
        raise ValueError(f"metric must be one of {list(DIVERSITY_METRICS)}; got {metric!r}.")
    diag = DIVERSITY_METRICS[metric][1]
    mat = pd.DataFrame(np.nan, index=list(members), columns=list(members))
    for m in members:
        mat.loc[m, m] = np.nan if diag is None else diag
    for _, r in diversity.iterrows():
        if r["model_a"] in mat.index and r["model_b"] in mat.index:
            mat.loc[r["model_a"], r["model_b"]] = r[metric]
            mat.loc[r["model_b"], r["model_a"]] = r[metric]
    return mat


def diversity_figure(diversity: pd.DataFrame, members: Sequence[str], metric: str = "q",
                     labels: Mapping[str, str] | None = None, title: str | None = None
                     ) -> go.Figure:
    """Heatmap of one pairwise diversity measure, values written in the cells."""
    labels = dict(labels or {})
    mat = diversity_matrix(diversity, members, metric)
    name, _, (lo, hi), low_diverse = DIVERSITY_METRICS[metric]
    values = mat.to_numpy(dtype=float)
    if hi is None:
        finite = values[np.isfinite(values)]
        hi = max(float(finite.max()) if finite.size else 1.0, 1e-9)
    names = [labels.get(m, m) for m in members]
    text = [["" if not np.isfinite(v) else f"{v:.2f}" for v in row] for row in values]
    scale = "RdBu_r" if lo < 0 else "Blues"
    fig = go.Figure(go.Heatmap(z=values, x=names, y=names, zmin=lo, zmax=hi, colorscale=scale,
                               text=text, texttemplate="%{text}", hoverongaps=False,
                               colorbar=dict(title=dict(text=metric)),
                               hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    hint = "lower = more diverse" if low_diverse else "higher = more diverse"
    return _layout(fig, title or f"{name} ({hint})", 260 + 40 * len(members))


def confusion_figure(confusion: Sequence[Sequence[int]], title: str | None = None
                     ) -> go.Figure:
    """The 2x2 confusion matrix ``[[TN, FP], [FN, TP]]`` with counts and row percentages; rows
    are the true class, columns the predicted class (HEM, ALL)."""
    cm = np.asarray(confusion, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    pct = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    text = [[f"{int(cm[i, j]):,}<br>{pct[i, j]:.1%}" for j in range(2)] for i in range(2)]
    classes = [CLASS_SHORT[c] for c in CLASSES]
    fig = go.Figure(go.Heatmap(z=pct, x=[f"predicted {c}" for c in classes],
                               y=[f"true {c}" for c in classes], zmin=0, zmax=1,
                               colorscale="Blues", showscale=False, text=text,
                               texttemplate="%{text}", textfont=dict(size=15),
                               hovertemplate="%{y}, %{x}: %{text}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, 260)


def roc_figure(curves: Mapping[str, Mapping[str, Any]], title: str | None = None) -> go.Figure:
    """ROC curves of several splits (or models), each with its operating point.

    ``curves`` maps a name to a :func:`~cnmc_core.metrics.binary_report` made with
    ``curves=True`` (keys ``roc``, ``roc_auc``, ``hem``, ``all``).
    """
    fig = go.Figure()
    palette = ["#1F77B4", "#FF7F0E", "#2CA02C", "#9467BD", "#8C564B"]
    for k, (name, rep) in enumerate(curves.items()):
        color = palette[k % len(palette)]
        roc = rep["roc"]
        auc = rep.get("roc_auc")
        auc_txt = "n/a" if auc is None or not np.isfinite(auc) else f"{auc:.3f}"
        fig.add_scatter(x=np.asarray(roc["fpr"]), y=np.asarray(roc["tpr"]), mode="lines",
                        name=f"{name} (AUC {auc_txt})", line=dict(color=color, width=2),
                        hovertemplate="FPR %{x:.3f}, TPR %{y:.3f}<extra></extra>")
        fpr = 1.0 - rep["hem"]["recall"]
        tpr = rep["all"]["recall"]
        fig.add_scatter(x=[fpr], y=[tpr], mode="markers", showlegend=False,
                        marker=dict(size=11, color=color, line=dict(color="white", width=1.5)),
                        hovertemplate=f"{name} at threshold {rep['threshold']:.2f}: "
                        "FPR %{x:.3f}, TPR %{y:.3f}<extra></extra>")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", showlegend=False, hoverinfo="skip",
                    line=dict(color="#BBBBBB", dash="dash", width=1))
    fig.update_xaxes(title="false positive rate (HEM called ALL)", range=[-0.02, 1.02])
    fig.update_yaxes(title="true positive rate (ALL recall)", range=[-0.02, 1.02])
    return _layout(fig, title, 330)


def _key(value: Any):
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def selected_keys(state: Any) -> list:
    """The distinct ``customdata`` keys of the selected points, in selection order.

    ``state`` is what ``st.plotly_chart(..., on_select="rerun")`` returns (a mapping with
    ``selection.points``, each point with ``customdata``), or None; points without customdata
    are ignored.
    """
    if not state:
        return []
    selection = state.get("selection") if isinstance(state, Mapping) else getattr(
        state, "selection", None)
    if not selection:
        return []
    points = selection.get("points") if isinstance(selection, Mapping) else getattr(
        selection, "points", None)
    keys: list = []
    for point in points or []:
        raw = point.get("customdata") if isinstance(point, Mapping) else None
        key = _key(raw)
        if key is not None and key not in keys:
            keys.append(key)
    return keys
