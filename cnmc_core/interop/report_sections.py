"""The sections of the shared report (:mod:`cnmc_core.interop.report`), each an HTML fragment
built from the library's tables and figures: the comparison table, learning curves, confusion
matrices, ROC/PR, a study's paired tests, ensemble weights, images every model misses, configs.

Every text that comes from a folder is escaped; figures are plotly divs without plotly.js (the
page inlines it once); thumbnails are ``data:`` PNGs. A section that has nothing to show says
why instead of disappearing.
"""

from __future__ import annotations

import base64
import html
import json
import math
from typing import Any, Mapping, Sequence

import pandas as pd

from cnmc_core.interop.sources import Item, protocol_text, study_metrics

__all__ = [
    "figure_html",
    "table_html",
    "note",
    "comparison_section",
    "curves_section",
    "confusion_section",
    "roc_pr_section",
    "study_section",
    "weights_section",
    "errors_section",
    "configs_section",
]

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
#: Images missed by every model shown as thumbnails, at most.
MAX_THUMBNAILS = 24


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def note(text: str) -> str:
    """A paragraph that says why a section shows nothing (or what to keep in mind)."""
    return f'<p class="note">{esc(text)}</p>'


def figure_html(fig, width: int | None = None) -> str:
    """A plotly figure as a div and its ``Plotly.newPlot`` call (plotly.js not included)."""
    import plotly.io as pio

    if width:
        fig.update_layout(width=width)
    return '<div class="figure">' + pio.to_html(fig, full_html=False, include_plotlyjs=False,
                                                 include_mathjax=False, config=_PLOT_CONFIG) + "</div>"


def _cell(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (dict, list)):
        return esc(json.dumps(value, default=str))
    return esc(value)


def table_html(frame: pd.DataFrame, css: str = "table", index: bool = False) -> str:
    """A frame as an HTML table (floats with 4 decimals, missing as ``-``)."""
    head = ([esc(frame.index.name or "")] if index else []) + [esc(c) for c in frame.columns]
    rows = []
    for label, row in frame.iterrows():
        cells = ([f"<th>{esc(label)}</th>"] if index else []) + [f"<td>{_cell(v)}</td>" for v in row]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="{css}"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _ci(value, low, high) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if low is None or high is None or any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.3f}, {high:.3f}]"


def comparison_section(entries: Mapping[str, Item]) -> str:
    """Weighted F1 and AUC with their 95% subject-bootstrap CIs on val and test, accuracy,
    sensitivity and specificity, each row naming its split protocol (the leaky one says so)."""
    from cnmc_core.analysis.experiments import metrics_table

    names = list(entries)
    paths = [entries[n].path for n in names]
    val = metrics_table(paths, "val", names).set_index("run")
    test = metrics_table(paths, "test", names).set_index("run")
    rows = []
    for name in names:
        v = val.loc[name] if name in val.index else None
        t = test.loc[name] if name in test.index else None
        protocol = (t if t is not None else v)["protocol"] if (t is not None or v is not None) \
            else entries[name].config.get("split_protocol")
        rows.append({
            "name": name, "kind": entries[name].kind, "model": entries[name].config.get("model"),
            "protocol": protocol_text(protocol),
            "val weighted F1 [95% CI]": _ci(*(v[["weighted_f1", "f1_ci_low", "f1_ci_high"]])) if v is not None else "-",
            "test weighted F1 [95% CI]": _ci(*(t[["weighted_f1", "f1_ci_low", "f1_ci_high"]])) if t is not None else "-",
            "test AUC [95% CI]": _ci(*(t[["roc_auc", "auc_ci_low", "auc_ci_high"]])) if t is not None else "-",
            "test accuracy": t["accuracy"] if t is not None else None,
            "sensitivity (ALL recall)": t["sensitivity_all"] if t is not None else None,
            "specificity (HEM recall)": t["specificity_hem"] if t is not None else None,
            "test images": t["n"] if t is not None else None,
        })
    frame = pd.DataFrame(rows)
    out = [table_html(frame, "table comparison")]
    protocols = sorted({r["protocol"] for r in rows if r["protocol"]})
    if len(protocols) > 1:
        out.append(note(f"These rows use different split protocols ({', '.join(protocols)}): their "
                        "scores are measured on different test images and are not directly "
                        "comparable."))
    if any("leaky" in p for p in protocols):
        out.append('<p class="warning">Scores of the rows marked <b>leaky</b> are inflated: the '
                   "split is by image, so cells of one person are in both train and test.</p>")
    out.append(note("CIs: 95% bootstrap over subjects. Sensitivity: recall of ALL (cancer); "
                    "specificity: recall of HEM (normal)."))
    return "\n".join(out)


def curves_section(entries: Mapping[str, Item], colors: Mapping[str, str],
                   width: int | None = None) -> str:
    """Learning curves overlaid (val loss, loss, val accuracy, accuracy, val AUC)."""
    from cnmc_core.analysis.curves import history_frame, history_metrics
    from cnmc_core.analysis.run_charts import learning_curve_figure

    histories = {n: history_frame(i.path) for n, i in entries.items() if i.kind == "run"}
    histories = {n: h for n, h in histories.items() if not h.empty}
    if not histories:
        return note("None of these has a training history (ensembles and studies have no "
                    "learning curves).")
    logged = history_metrics(histories.values())
    out = []
    for metric in ("val_loss", "loss", "val_accuracy", "accuracy", "val_auc"):
        if metric in logged:
            fig, _ = learning_curve_figure(histories, metric, colors=colors)
            out.append(f'<div class="keep"><h4>{esc(metric)}</h4>{figure_html(fig, width)}</div>')
    return '<div class="grid2">' + "\n".join(out) + "</div>"


def confusion_section(entries: Mapping[str, Item], width: int | None = None) -> str:
    """Each one's confusion matrix on test and on val (counts and row percentages)."""
    from cnmc_core.analysis.experiments import confusion_frame
    from cnmc_core.analysis.run_charts import run_confusion_figure

    out = []
    for name, item in entries.items():
        for split in ("test", "val"):
            matrix = confusion_frame(item.path, split)
            if matrix is not None:
                out.append(figure_html(run_confusion_figure(matrix, f"{name}: {split}"), width))
    if not out:
        return note("None of these has metrics.")
    return '<div class="grid4">' + "\n".join(out) + "</div>"


def roc_pr_section(entries: Mapping[str, Item], colors: Mapping[str, str],
                   width: int | None = None) -> str:
    """ROC and precision-recall curves on test and on val, AUC and AP in the legends."""
    from cnmc_core.analysis.experiments import load_curve_points
    from cnmc_core.analysis.run_charts import roc_pr_figures

    out = []
    for split in ("test", "val"):
        curves = {n: p for n, i in entries.items()
                  if (p := load_curve_points(i.path, split)) is not None}
        if not curves:
            out.append(note(f"None of these has {split} predictions with both classes."))
            continue
        roc, pr = roc_pr_figures(curves, colors)
        roc.update_layout(title=f"ROC on {split} (positive class: ALL)")
        pr.update_layout(title=f"Precision-recall on {split} (positive class: ALL)")
        out.append('<div class="grid2">' + figure_html(roc, width) + figure_html(pr, width) + "</div>")
    return "\n".join(out)


def study_section(study: Item, runs: Sequence[str]) -> str:
    """A study: its protocol (leaky marked), presets, folds and seeds, its runs, and its paired
    comparisons from its ``metrics.json`` (``comparisons``), or a note when it has none."""
    from cnmc_core.analysis.experiments import flatten_config

    config = study.config
    facts = pd.DataFrame({"value": [protocol_text(config.get("protocol")), config.get("presets"),
                                    config.get("folds"), config.get("seeds"),
                                    config.get("dataset_fingerprint"), config.get("backend"),
                                    ", ".join(runs)]},
                         index=pd.Index(["protocol", "presets", "folds", "seeds", "dataset",
                                         "backend", "runs"], name="study " + study.id))
    out = [table_html(facts, "table facts", index=True)]
    comparisons = study_metrics(study).get("comparisons")
    if isinstance(comparisons, list) and comparisons:
        rows = [flatten_config(c) if isinstance(c, dict) else {"value": c} for c in comparisons]
        out.append("<h4>Paired comparisons</h4>" + table_html(pd.DataFrame(rows), "table wide"))
        out.append(note("folds.*: the per-fold differences (same fold and seed) with the "
                        "corrected resampled t-test; pooled.*: the paired subject bootstrap of "
                        "the pooled out-of-fold difference (A minus B)."))
    else:
        out.append(note(f"Study {study.id} has no paired comparisons yet (its folder has no "
                        "metrics.json with a 'comparisons' list): they are written when every "
                        "run of the study has finished."))
    return "\n".join(out)


def weights_section(entries: Mapping[str, Item]) -> str:
    """Each ensemble's method, threshold and member weights (scaled to sum to 1)."""
    from cnmc_core.ensemble.members import ensemble_weights
    from cnmc_core.workspace.listing import display_name

    out = []
    for name, item in entries.items():
        if item.kind != "ensemble":
            continue
        members = [str(m) for m in item.config.get("members") or []]
        weights = ensemble_weights(item.path, item.config)
        frame = pd.DataFrame({"member": [display_name(m) for m in members], "weight": weights})
        out.append(f"<h4>{esc(name)}: {esc(item.config.get('method'))}, threshold "
                   f"{_cell(item.config.get('threshold'))}, fitted on "
                   f"{esc(item.config.get('fitted_on', 'val'))}</h4>" + table_html(frame))
    return "\n".join(out)


def _thumbnail_png(path: str) -> str:
    import cv2

    from cnmc_core.data.summary import thumbnail

    image = thumbnail(path, 96, crop=True)
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise ValueError("PNG encoding failed")
    return base64.b64encode(data.tobytes()).decode("ascii")


def errors_section(entries: Mapping[str, Item], width: int | None = None) -> str:
    """Images of the test split missed by every selected run and ensemble (aligned with
    :func:`cnmc_core.ensemble.align.align_runs`), by class, and a sample of them as thumbnails
    cropped to the cell; a note when they do not align or the images are gone."""
    from cnmc_core.analysis.charts import miss_histogram_figure
    from cnmc_core.analysis.errors import analyse_errors
    from cnmc_core.contracts import class_title
    from cnmc_core.ensemble.align import align_runs
    from cnmc_core.ensemble.members import data_source, image_paths
    from cnmc_core.exceptions import CnmcError

    members = {n: i for n, i in entries.items() if i.kind in ("run", "ensemble")}
    if len(members) < 2:
        return note("Shared errors need two or more runs or ensembles scored on the same images.")
    try:
        aligned = align_runs([i.path for i in members.values()])
    except CnmcError as exc:
        return note(f"Shared errors are left out: these runs do not align ({exc}).")
    report = analyse_errors(aligned, "test")
    correct = report["correct"]
    missed = sorted(str(i) for i in correct.index[~correct.to_numpy().any(axis=1)])
    y = dict(zip(aligned.splits["test"].image_id.astype(str), aligned.splits["test"].y))
    out = [figure_html(miss_histogram_figure(report["histogram"], "Test images by the number "
                                             "of models that miss them"), width)]
    by_class = {c: sum(1 for i in missed if y[i] == c) for c in (0, 1)}
    out.append(f"<p>{len(missed)} of {report['n']} test images are missed by all {len(members)} "
               f"({by_class[0]} {esc(class_title(0))}, {by_class[1]} {esc(class_title(1))}).</p>")
    if not missed:
        return "\n".join(out)
    try:
        source = data_source(aligned.paths[0])
        files = image_paths(source) if source else {}
    except CnmcError as exc:
        out.append(note(f"No thumbnails: the dataset cannot be read ({exc})."))
        return "\n".join(out)
    if not files:
        out.append(note("No thumbnails: the runs do not record their dataset."))
        return "\n".join(out)
    probs = aligned.splits["test"].probs.mean(axis=1)
    mean_prob = dict(zip(aligned.splits["test"].image_id.astype(str), probs))
    cards, gone = [], []
    for image_id in missed[:MAX_THUMBNAILS]:
        try:
            data = _thumbnail_png(files[image_id])
        except (KeyError, OSError, CnmcError):
            gone.append(image_id)
            continue
        cards.append(f'<figure class="thumb"><img class="thumb" alt="{esc(image_id)}" '
                     f'src="data:image/png;base64,{data}"><figcaption>{esc(image_id)}<br>true '
                     f"{esc(class_title(y[image_id], short=True))}, mean P(ALL) "
                     f"{mean_prob[image_id]:.2f}</figcaption></figure>")
    if len(missed) > MAX_THUMBNAILS:
        out.append(note(f"The first {MAX_THUMBNAILS} of {len(missed)} by image id."))
    out.append('<div class="thumbs">' + "".join(cards) + "</div>")
    if gone:
        out.append(note(f"{len(gone)} image(s) could not be read (moved or deleted): "
                        f"{', '.join(gone[:5])}{' ...' if len(gone) > 5 else ''}."))
    return "\n".join(out)


def configs_section(entries: Mapping[str, Item], open_all: bool = False) -> str:
    """The fields where the configs differ, then each whole config, collapsible."""
    from cnmc_core.analysis.experiments import config_diff

    out = []
    configs = {n: i.config for n, i in entries.items()}
    if len(configs) > 1:
        diff = config_diff(configs)
        out.append("<h4>Fields that differ</h4>" + (table_html(diff, "table wide", index=True)
                   if not diff.empty else note("The configs are identical (apart from ids and "
                                               "times).")))
    for name, config in configs.items():
        out.append(f"<details{' open' if open_all else ''}><summary>{esc(name)} "
                   f"({esc(entries[name].kind)})</summary><pre>"
                   f"{esc(json.dumps(config, indent=2, default=str))}</pre></details>")
    return "\n".join(out)
