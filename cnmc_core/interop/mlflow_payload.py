"""What one run, ensemble or study becomes in MLflow, computed from its folder without touching
a tracking server: params, tags, metrics (per epoch with their step, and final ones with their
CI bounds), figures and the files to upload.

MLflow's limits are kept here: a param or metric key is at most 250 characters of letters,
digits, ``_ - . / `` and space (other characters become ``_``; a longer key is cut and ends with
a hash of the whole key, so two long keys stay distinct), a param value at most 6,000 characters
and a tag value at most 8,000 (a longer one is cut, ends with ``...[cut]`` and is listed in the
tag ``cnmc.truncated``; the whole config is uploaded as ``config.json`` anyway).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from cnmc_core.analysis.experiments import flatten_config
from cnmc_core.contracts import CONFIG, LOG, METRICS, MODEL, PREDICTIONS
from cnmc_core.interop.sources import Item, item_facts, study_metrics

__all__ = [
    "KEY_MAX",
    "PARAM_VALUE_MAX",
    "TAG_VALUE_MAX",
    "TAG_PREFIX",
    "Payload",
    "mlflow_key",
    "param_values",
    "epoch_metrics",
    "final_metrics",
    "item_tags",
    "item_figures",
    "build_payload",
]

KEY_MAX = 250
PARAM_VALUE_MAX = 6000
TAG_VALUE_MAX = 8000
#: Every tag the export sets starts with this (besides MLflow's own ``mlflow.*`` tags).
TAG_PREFIX = "cnmc."
_CUT = "...[cut]"
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-./ ]")
#: history.jsonl columns logged per epoch -> the MLflow metric name.
_EPOCH_METRICS = {"loss": "train_loss", "accuracy": "train_accuracy", "auc": "train_auc",
                  "val_loss": "val_loss", "val_accuracy": "val_accuracy", "val_auc": "val_auc",
                  "learning_rate": "learning_rate", "stage_index": "stage_index"}
#: metrics.json report fields logged as final metrics (``<split>_<name>``).
_REPORT_FIELDS = ("weighted_f1", "roc_auc", "accuracy", "macro_f1", "weighted_precision",
                  "weighted_recall", "threshold", "n", "n_all", "n_hem")


@dataclass
class Payload:
    """Everything an export logs for one item.

    ``metrics`` holds ``(key, value, step, timestamp_ms)`` tuples; ``files`` maps an artifact
    path (``folder/name``) to a file of the item's folder; ``pngs`` an artifact path to a figure
    still to render; ``truncated`` the keys whose value was cut.
    """

    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    files: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    json_artifacts: dict[str, Any] = field(default_factory=dict)
    truncated: list[str] = field(default_factory=list)


def mlflow_key(key: str) -> str:
    """A param or metric key MLflow accepts (see the module docstring)."""
    text = _BAD_KEY_CHARS.sub("_", str(key)) or "_"
    if len(text) > KEY_MAX:
        digest = hashlib.sha1(str(key).encode()).hexdigest()[:10]
        text = f"{text[:KEY_MAX - 11]}_{digest}"
    return text


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, allow_nan=True)


def _cut(value: str, limit: int) -> tuple[str, bool]:
    return (value, False) if len(value) <= limit else (value[:limit - len(_CUT)] + _CUT, True)


def param_values(config: dict) -> tuple[dict[str, str], list[str]]:
    """The config flattened to dotted keys (:func:`cnmc_core.analysis.experiments.
    flatten_config`) as MLflow params: ``({key: text}, [keys whose value was cut])``. Values are
    written as JSON (``null``, ``true``, ``[0.6, 0.2, 0.2]``), strings as they are."""
    params: dict[str, str] = {}
    cut: list[str] = []
    for key, value in flatten_config(config).items():
        name = mlflow_key(key)
        params[name], was_cut = _cut(_text(value), PARAM_VALUE_MAX)
        if was_cut:
            cut.append(name)
    return params, cut


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def epoch_metrics(item: Item) -> list[tuple[str, float, int, int]]:
    """Per-epoch metrics from ``history.jsonl``: train and val loss, accuracy and AUC, the
    learning rate and the stage index, each with the epoch as its step (counted across stages)
    and the epoch's end time."""
    from cnmc_core.workspace.layout import read_history

    if item.kind != "run":
        return []
    history = read_history(item.path)
    out = []
    for record in history.to_dict(orient="records") if not history.empty else []:
        step = _number(record.get("epoch"))
        if step is None:
            continue
        stamp = _number(record.get("time"))
        ms = int(stamp * 1000) if stamp is not None and math.isfinite(stamp) else 0
        for column, name in _EPOCH_METRICS.items():
            value = _number(record.get(column))
            if value is not None and math.isfinite(value):
                out.append((name, value, int(step), ms))
    return out


def final_metrics(metrics: dict) -> dict[str, float]:
    """The val and test scores of ``metrics.json``: ``<split>_<field>`` for weighted F1, ROC AUC,
    accuracy, macro F1, weighted precision and recall, threshold and counts; the per-class
    ``<split>_precision_all`` / ``_recall_all`` / ``_f1_all`` (and ``_hem``); the CI bounds
    ``<split>_weighted_f1_ci_low`` / ``_ci_high`` and ``<split>_roc_auc_ci_low`` / ``_ci_high``.
    Missing or undefined values (an AUC on one class) are left out."""
    out: dict[str, float] = {}
    for split in ("val", "test"):
        report = metrics.get(split)
        if not isinstance(report, dict):
            continue
        for name in _REPORT_FIELDS:
            out[f"{split}_{name}"] = _number(report.get(name))
        for cls in ("all", "hem"):
            per_class = report.get(cls) if isinstance(report.get(cls), dict) else {}
            for name in ("precision", "recall", "f1", "support"):
                out[f"{split}_{name}_{cls}"] = _number(per_class.get(name))
        ci = report.get("ci") if isinstance(report.get("ci"), dict) else {}
        for name in ("weighted_f1", "roc_auc"):
            bounds = ci.get(name) if isinstance(ci.get(name), dict) else {}
            out[f"{split}_{name}_ci_low"] = _number(bounds.get("low"))
            out[f"{split}_{name}_ci_high"] = _number(bounds.get("high"))
    return {k: v for k, v in out.items() if v is not None and math.isfinite(v)}


def _study_metrics(study: Item) -> dict[str, float]:
    """The numbers of a study's ``metrics.json`` (pooled scores, paired comparisons), as
    flattened keys; nothing when the study has no metrics yet."""
    flat = flatten_config(study_metrics(study))
    return {mlflow_key(k): float(v) for k, v in flat.items()
            if _number(v) is not None and math.isfinite(float(v))}


def item_tags(item: Item, parent_run_id: str | None = None, study: str | None = None) -> dict[str, str]:
    """The tags of an item's MLflow run: ``cnmc.kind``, ``cnmc.id``, ``cnmc.protocol`` (with
    "leaky" where it is), ``cnmc.leaky``, ``cnmc.dataset_fingerprint``, ``cnmc.data_kind``,
    ``cnmc.study``, ``cnmc.fold``, ``cnmc.seed``, ``cnmc.preset``, ``cnmc.model``,
    ``cnmc.version`` (that made the folder) and ``cnmc.exporter_version``; an ensemble's
    ``cnmc.members``; a run's ``cnmc.stages`` (``train: epochs 1-8``); MLflow's run name, note
    and, for a study's run, ``mlflow.parentRunId``. Unknown facts are left out, except
    ``cnmc.data_kind`` (``unknown``)."""
    import cnmc_core

    facts = item_facts(item)
    if study is not None:
        facts["study"] = study
    tags = {f"{TAG_PREFIX}{k}": _text(v) for k, v in facts.items()
            if v is not None and k not in ("protocol", "protocol_label")}
    tags[f"{TAG_PREFIX}protocol"] = facts["protocol_label"] or "unknown"
    tags[f"{TAG_PREFIX}leaky"] = "true" if facts["leaky"] else "false"
    tags[f"{TAG_PREFIX}version"] = _text(facts["cnmc_version"] or "unknown")
    tags.pop(f"{TAG_PREFIX}cnmc_version", None)
    tags[f"{TAG_PREFIX}exporter_version"] = cnmc_core.__version__
    if item.kind == "ensemble":
        tags[f"{TAG_PREFIX}members"] = ",".join(map(str, item.config.get("members") or []))
        tags[f"{TAG_PREFIX}method"] = _text(item.config.get("method"))
    if item.kind == "run":
        stages = [f"{s.get('name', i)}: epochs {lo}-{hi}" for i, (s, lo, hi)
                  in enumerate(_stage_epochs(item))]
        if stages:
            tags[f"{TAG_PREFIX}stages"] = "; ".join(stages)
    tags["mlflow.runName"] = item.id
    note = f"cnmc {item.kind} {item.id}; split protocol {facts['protocol_label'] or 'unknown'}"
    if facts["leaky"]:
        note += (". LEAKY: the split is by image, so cells of one subject are in train and "
                 "test and the scores are inflated.")
    tags["mlflow.note.content"] = note
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    return tags


def _stage_epochs(item: Item) -> list[tuple[dict, int, int]]:
    """Each stage with the first and last epoch it ran (from the history)."""
    from cnmc_core.workspace.layout import read_history

    history = read_history(item.path)
    stages = item.config.get("stages") or []
    if history.empty or "epoch" not in history.columns:
        return []
    key = "stage_index" if "stage_index" in history.columns else "stage"
    out = []
    for position, (value, rows) in enumerate(history.groupby(key, sort=False)):
        stage = stages[int(value)] if key == "stage_index" and int(value) < len(stages) else \
            {"name": str(rows["stage"].iloc[0]) if "stage" in rows else str(value)}
        out.append((stage, int(rows["epoch"].min()), int(rows["epoch"].max())))
    return out


def item_figures(item: Item) -> dict[str, Any]:
    """The figures of an item as ``{artifact path: plotly Figure}``: a run's learning curves
    (loss and accuracy, train and val), and for val and test the confusion matrix and the ROC
    and precision-recall curves (:mod:`cnmc_core.analysis.run_charts`)."""
    from cnmc_core.analysis.curves import history_frame
    from cnmc_core.analysis.experiments import confusion_frame, load_curve_points
    from cnmc_core.analysis.run_charts import (
        live_curves_figure,
        roc_pr_figures,
        run_color,
        run_confusion_figure,
    )

    figures: dict[str, Any] = {}
    if item.kind == "run":
        history = history_frame(item.path)
        if not history.empty:
            figures["figures/learning_curves.png"] = live_curves_figure(history)
    for split in ("val", "test"):
        confusion = confusion_frame(item.path, split)
        if confusion is not None:
            fig = run_confusion_figure(confusion, f"{item.id}: {split}")
            fig.update_layout(width=520, height=420)
            figures[f"figures/confusion_{split}.png"] = fig
        points = load_curve_points(item.path, split)
        if points is not None:
            roc, pr = roc_pr_figures({item.id: points}, {item.id: run_color(item.id)})
            figures[f"figures/roc_{split}.png"] = roc.update_layout(width=700, height=520)
            figures[f"figures/pr_{split}.png"] = pr.update_layout(width=700, height=520)
    return figures


def build_payload(item: Item, *, include_model: bool = True, include_figures: bool = True,
                  parent_run_id: str | None = None, study: str | None = None) -> Payload:
    """Params, tags, metrics, files and figures of one item (see the module docstring)."""
    payload = Payload()
    config = dict(item.config)
    if item.kind == "study":
        config.pop("runs", None)  # the children say which runs; a long list is no param
    payload.params, payload.truncated = param_values(config)
    payload.tags = item_tags(item, parent_run_id, study)
    for key, value in list(payload.tags.items()):
        payload.tags[key], was_cut = _cut(value, TAG_VALUE_MAX)
        if was_cut:
            payload.truncated.append(key)
    if payload.truncated:
        payload.tags[f"{TAG_PREFIX}truncated"] = _cut(",".join(payload.truncated), TAG_VALUE_MAX)[0]
    stamp = int(float(item.config.get("created") or 0) * 1000)
    payload.metrics = epoch_metrics(item)
    if item.kind == "study":
        finals = _study_metrics(item)
        files = ("study.json", METRICS)
    else:
        from cnmc_core.interop.sources import read_object

        metrics = read_object(item.path / METRICS, item.kind) if (item.path / METRICS).is_file() else {}
        finals = final_metrics(metrics)
        files = (CONFIG, METRICS, PREDICTIONS, LOG) + ((MODEL,) if include_model else ())
    payload.metrics += [(k, v, 0, stamp) for k, v in finals.items()]
    for name in files:
        if (item.path / name).is_file():
            folder = "model" if name == MODEL else "cnmc"
            payload.files[f"{folder}/{name}"] = item.path / name
    if item.kind == "ensemble":
        from cnmc_core.ensemble.members import ensemble_weights

        members = [str(m) for m in item.config.get("members") or []]
        payload.json_artifacts["cnmc/ensemble_weights.json"] = {
            "method": item.config.get("method"), "members": members,
            "weights": dict(zip(members, ensemble_weights(item.path, item.config))),
            "threshold": item.config.get("threshold")}
    if include_figures and item.kind != "study":
        payload.figures = item_figures(item)
    return payload
