"""Plotly figures of runs, for the Compare, Train and Data pages: learning curves, confusion
matrices and their difference, ROC and precision-recall curves, a run's live curves, images per
subject.

Figures are built here from the library's tables, so tests check them without a browser; pages
only pass them to ``st.plotly_chart``. A run keeps one colour on every page and in every
selection: :func:`run_color` derives it from the run's id, not from its place in a table.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from cnmc_core.analysis.charts import CLASS_COLORS
from cnmc_core.analysis.curves import smooth_curves, stage_boundaries
from cnmc_core.analysis.experiments import row_normalised
from cnmc_core.contracts import CLASS_TITLES

__all__ = [
    "RUN_PALETTE",
    "run_color",
    "learning_curve_figure",
    "live_curves_figure",
    "run_confusion_figure",
    "roc_pr_figures",
    "subject_counts_figure",
]

#: The colours runs are drawn in (Plotly's and D3's qualitative palettes: 20 distinct hues).
RUN_PALETTE = tuple(qualitative.Plotly) + tuple(qualitative.D3)


def run_color(run_id: str) -> str:
    """The colour of a run (or ensemble) everywhere: picked from :data:`RUN_PALETTE` by a hash
    of its id, so it does not change when other runs are selected, added or removed."""
    digest = hashlib.sha1(str(run_id).encode()).digest()
    return RUN_PALETTE[int.from_bytes(digest[:4], "big") % len(RUN_PALETTE)]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def _epoch_ticks(fig: go.Figure, n_epochs: int, **where) -> None:
    """Whole-number epoch ticks (never 1.2, 1.4, ...), one per epoch up to 20 epochs."""
    fig.update_xaxes(tickformat="d", tick0=1, dtick=1 if n_epochs <= 20 else None,
                     rangemode="tozero" if n_epochs <= 1 else "normal", **where)


def learning_curve_figure(histories: Mapping[str, pd.DataFrame], metric: str, *,
                          colors: Mapping[str, str], weight: float = 0.0, x: str = "epoch",
                          log_y: bool = False) -> tuple[go.Figure, int]:
    """Learning curves of several runs overlaid, one colour per run.

    Args:
        histories: ``{run name: history frame}`` (:func:`cnmc_core.analysis.curves.
            history_frame`); runs without ``metric`` are left out.
        metric: the logged metric to draw (``val_loss``, ``accuracy``...).
        colors: ``{run name: colour}`` (:func:`run_color` of the run ids).
        weight: debiased-EMA smoothing weight (0: none); with smoothing the raw values stay as a
            faint line.
        x: ``epoch`` or ``time`` (seconds since the first epoch began).
        log_y: a logarithmic y axis.

    Returns:
        ``(figure, number of stage boundaries drawn)`` (dashed lines where a stage begins).
    """
    fig = go.Figure()
    boundaries = 0
    for name, history in histories.items():
        if metric not in history.columns:
            continue
        color = colors.get(name, "#888888")
        curve = smooth_curves(history, metric, weight, x)
        if weight > 0:
            fig.add_scatter(x=curve["x"], y=curve["raw"], mode="lines", name=f"{name} (raw)",
                            line=dict(color=_rgba(color, 0.3), width=1), showlegend=False,
                            hoverinfo="skip")
        fig.add_scatter(x=curve["x"], y=curve["smooth"] if weight > 0 else curve["raw"],
                        mode="lines+markers", name=name, line=dict(color=color, width=2.5),
                        marker=dict(size=5), customdata=curve["stage"],
                        hovertemplate="%{y:.4f} (%{customdata})")
        for xb, stage in stage_boundaries(history, x):
            boundaries += 1
            fig.add_vline(x=xb, line=dict(color=color, dash="dash", width=1),
                          annotation_text=f"{stage}", annotation_position="top left",
                          annotation_font=dict(size=11, color=color))
    fig.update_layout(height=400, margin=dict(l=10, r=10, t=60, b=10), yaxis_title=metric,
                      xaxis_title="epoch" if x == "epoch" else "seconds since the first epoch began",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
                      hovermode="x unified")
    if log_y:
        fig.update_yaxes(type="log")
    if x == "epoch":
        _epoch_ticks(fig, max((len(h) for h in histories.values()), default=1))
    return fig, boundaries


def live_curves_figure(history: pd.DataFrame) -> go.Figure:
    """A running run's loss and accuracy (train and val) side by side, from ONE read of its
    history, so that both panels always show the same epochs."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"),
                        horizontal_spacing=0.08)
    styles = {"": dict(dash="solid", color="#FF7F0E"), "val_": dict(dash="dot", color="#1F77B4")}
    for col, metric in ((1, "loss"), (2, "accuracy")):
        for prefix, line in styles.items():
            name = f"{prefix}{metric}"
            if name in history.columns:
                fig.add_scatter(x=history["epoch"], y=history[name], mode="lines+markers",
                                name=("val" if prefix else "train"), legendgroup=prefix,
                                showlegend=col == 1, line=dict(width=2, **line),
                                marker=dict(size=6, color=line["color"]), row=1, col=col)
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.12, xanchor="right", x=1))
    _epoch_ticks(fig, int(history["epoch"].max()) if len(history) else 1)
    fig.update_xaxes(title_text="epoch")
    return fig


def run_confusion_figure(confusion: pd.DataFrame, title: str, diff: bool = False) -> go.Figure:
    """A confusion matrix (counts and row percentages) of :func:`cnmc_core.analysis.experiments.
    confusion_frame`, or with ``diff`` the difference of two (row shares of A minus B, in
    percentage points; blue where A does better: more right on the diagonal, fewer errors off
    it)."""
    short = ["HEM", "ALL"]
    if diff:
        share = confusion.to_numpy(dtype=float)
        text = [[f"{v * 100:+.1f} pp" for v in row] for row in share]
        z, scale, zmin, zmax = share * 100 * np.array([[1, -1], [-1, 1]]), "RdBu", -100, 100
    else:
        share = row_normalised(confusion).to_numpy()
        n = confusion.to_numpy()
        text = [[f"{n[i, j]:,}<br>{share[i, j] * 100:.1f}%" for j in range(2)] for i in range(2)]
        z, scale, zmin, zmax = share * 100, "Blues", 0, 100
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"pred {c}" for c in short], y=[f"true {c}" for c in short], text=text,
        texttemplate="%{text}", textfont=dict(size=15), colorscale=scale, zmin=zmin, zmax=zmax,
        zmid=0 if diff else None, showscale=False, hoverinfo="skip"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10),
                      title=dict(text=title, font_size=13), yaxis=dict(autorange="reversed"))
    return fig


def roc_pr_figures(curves: Mapping[str, Mapping], colors: Mapping[str, str]
                   ) -> tuple[go.Figure, go.Figure]:
    """ROC and precision-recall figures of several runs (positive class ALL), AUC and AP in the
    legend. ``curves`` maps a run name to :func:`cnmc_core.analysis.experiments.
    load_curve_points`."""
    roc, pr = go.Figure(), go.Figure()
    roc.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#bbbbbb", dash="dot"),
                    name="chance", hoverinfo="skip")
    for name, p in curves.items():
        color = colors.get(name, "#888888")
        roc.add_scatter(x=p["fpr"], y=p["tpr"], mode="lines",
                        name=f"{name} (AUC {p['roc_auc']:.3f})",
                        line=dict(color=color, width=2, shape="hv"))
        pr.add_scatter(x=p["recall"], y=p["precision"], mode="lines",
                       name=f"{name} (AP {p['average_precision']:.3f}, ROC AUC {p['roc_auc']:.3f})",
                       line=dict(color=color, width=2, shape="vh"))
    # plotly hides a one-trace legend, and the legend carries the AUC
    layout = dict(height=400, margin=dict(l=10, r=10, t=30, b=10),
                  legend=dict(orientation="h", y=-0.25), showlegend=True)
    roc.update_layout(title="ROC (positive class: ALL)",
                      xaxis_title="false positive rate (HEM called ALL)",
                      yaxis_title="true positive rate (ALL found)", **layout)
    pr.update_layout(title="Precision-recall (positive class: ALL)", xaxis_title="recall of ALL",
                     yaxis_title="precision of ALL", yaxis_range=[0, 1.02], **layout)
    return roc, pr


def subject_counts_figure(by_subject: pd.DataFrame) -> go.Figure:
    """Images per subject, coloured by class, in the order of :func:`cnmc_core.data.summary.
    subject_counts` (its ``subject``, ``class``, ``images``, ``sources`` columns)."""
    fig = go.Figure()
    for cls, title in CLASS_TITLES.items():
        part = by_subject[by_subject["class"] == title]
        if len(part):
            fig.add_bar(x=part["subject"], y=part["images"], name=title,
                        marker_color=CLASS_COLORS[cls], customdata=part["sources"],
                        hovertemplate="subject %{x}: %{y} images (%{customdata})<extra></extra>")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10), legend_title_text="",
                      barmode="stack",
                      xaxis=dict(type="category", categoryorder="array",
                                 categoryarray=by_subject["subject"].tolist(), title="subject"),
                      yaxis_title="images")
    return fig
