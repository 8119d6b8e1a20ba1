"""What a model is, shown beside it wherever it scores (the Predict and Explain pages): the data
it was trained on and its honest score.

- :func:`run_provenance`: synthetic, real or unknown, and how that is known: recorded by the run
  in its ``config.json`` (``recorded``); for a run trained before that was kept, read now from
  its dataset's generator marker if the dataset is still there (``dataset marker``, said so);
  else ``unknown``, never guessed.
- :func:`member_score`: the AUC with its subject-level CI and the protocol: a study fold's
  preset is scored by the study's pooled out-of-fold AUC (every subject scored once), any other
  run or ensemble by its test AUC.
- :func:`model_card`: both for a run or an ensemble (whose data is that of all its runs), and
  the warning of a model trained on synthetic cells (:data:`SYNTHETIC_WARNING`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnmc_core.contracts import CONFIG, METRICS, protocol_label
from cnmc_core.exceptions import CnmcError

__all__ = [
    "SYNTHETIC_WARNING",
    "UNKNOWN",
    "run_provenance",
    "member_score",
    "model_card",
    "card_text",
]

SYNTHETIC_WARNING = "trained on synthetic cells; its output on real cells is not meaningful"
UNKNOWN = "unknown"
_KINDS = ("synthetic", "real")


def _read(path: Path) -> tuple[dict | None, str | None]:
    from cnmc_core.workspace.fileio import read_json

    try:
        return read_json(path, expect=dict), None
    except FileNotFoundError:
        return None, f"{path} is missing"
    except (OSError, CnmcError) as exc:
        return None, f"{path} cannot be read ({exc})"


def run_provenance(run_path: str | os.PathLike) -> dict[str, Any]:
    """What a run was trained on.

    Returns:
        ``{"kind": "synthetic" | "real" | "unknown", "source": "recorded" | "dataset marker" |
        "unknown", "note": a sentence saying how it is known, "generator_version",
        "generator_seed", "fingerprint"}``. ``real`` means no generator marker was found.
        Never raises: a damaged ``config.json`` gives ``unknown`` with the reason.
    """
    from cnmc_core.data.provenance import dataset_record

    run_path = Path(run_path)
    out: dict[str, Any] = {"kind": UNKNOWN, "source": UNKNOWN, "generator_version": None,
                           "generator_seed": None, "fingerprint": None}
    config, error = _read(run_path / CONFIG)
    if config is None:
        return {**out, "note": f"not known: {error}"}
    out["fingerprint"] = config.get("dataset_fingerprint")
    recorded = config.get("provenance")
    if isinstance(recorded, str):
        recorded = {"kind": recorded}
    if isinstance(recorded, dict) and recorded.get("kind") in _KINDS:
        out.update(kind=recorded["kind"], source="recorded",
                   generator_version=recorded.get("generator_version"),
                   generator_seed=recorded.get("generator_seed"),
                   fingerprint=recorded.get("fingerprint") or out["fingerprint"],
                   note="recorded by the run when it was trained")
        return out
    data = config.get("data")
    if data and Path(str(data)).expanduser().exists():
        try:
            record = dataset_record(str(data))
        except CnmcError as exc:
            return {**out, "note": f"not recorded by the run; its dataset cannot be read ({exc})"}
        found = "its generator marker" if record["marker"] else "no generator marker"
        out.update(kind=record["kind"], source="dataset marker",
                   generator_version=record["generator_version"],
                   generator_seed=record["generator_seed"],
                   note=f"not recorded by the run (trained before provenance was kept); "
                        f"derived now from its dataset {data}, which has {found}")
        return out
    where = f"its dataset {data} is gone" if data else "it names no dataset"
    return {**out, "note": f"not recorded by the run (trained before provenance was kept), and "
                           f"{where}"}


def _auc_of(report: Any) -> tuple[float | None, float | None, float | None]:
    if not isinstance(report, dict):
        return None, None, None
    ci = report.get("ci") if isinstance(report.get("ci"), dict) else {}
    auc_ci = ci.get("roc_auc") if isinstance(ci.get("roc_auc"), dict) else {}

    def number(v):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return number(report.get("roc_auc")), number(auc_ci.get("low")), number(auc_ci.get("high"))


def _study_score(run_path: Path, config: dict) -> dict | None:
    """The pooled out-of-fold AUC of the run's preset in its study, if the study has results."""
    study = config.get("study")
    if not isinstance(study, dict) or not study.get("id") or not study.get("preset"):
        return None
    from cnmc_core.workspace.fileio import check_name

    try:
        study_id = check_name(str(study["id"]), "study id")
    except CnmcError:
        return None
    results, _ = _read(run_path.parent.parent / "studies" / study_id / METRICS)
    preset = ((results or {}).get("presets") or {}).get(str(study["preset"]))
    if not isinstance(preset, dict):
        return None
    auc, low, high = _auc_of(preset.get("pooled"))
    if auc is None:
        return None
    protocol = results.get("protocol")
    return {"what": f"pooled out-of-fold AUC of study {study_id} ({results.get('folds')} folds, "
                    f"{preset.get('n_subjects')} subjects)",
            "auc": auc, "low": low, "high": high, "protocol": protocol,
            "protocol_label": protocol_label(protocol)}


def member_score(member_path: str | os.PathLike) -> dict[str, Any]:
    """The score shown beside a run or an ensemble.

    Returns:
        ``{"what", "auc", "low", "high", "protocol", "protocol_label"}``: a study fold's pooled
        out-of-fold AUC when its study has results, else the test AUC with its subject-bootstrap
        CI from ``metrics.json``; ``auc`` None (and ``what`` saying why) when there is none.
        Never raises.
    """
    path = Path(member_path)
    config, error = _read(path / CONFIG)
    if config is None:
        return {"what": f"no score: {error}", "auc": None, "low": None, "high": None,
                "protocol": None, "protocol_label": ""}
    study = _study_score(path, config)
    if study is not None:
        return study
    metrics, error = _read(path / METRICS)
    protocol = (metrics or {}).get("split_protocol") or config.get("split_protocol")
    auc, low, high = _auc_of((metrics or {}).get("test"))
    what = "test AUC" if auc is not None else f"no test AUC: {error or 'metrics.json has none'}"
    return {"what": what, "auc": auc, "low": low, "high": high, "protocol": protocol,
            "protocol_label": protocol_label(protocol)}


def _leaf_paths(member_path: Path) -> tuple[list[Path], str | None]:
    from cnmc_core.ensemble.members import leaf_runs

    try:
        return [run for run, _ in leaf_runs(member_path, "described")], None
    except CnmcError as exc:
        return [], str(exc)


def model_card(member_path: str | os.PathLike) -> dict[str, Any]:
    """What Predict and Explain show beside a run or an ensemble.

    Returns:
        ``{"kind": "synthetic" | "real" | "mixed" | "unknown", "runs": {run name:
        run_provenance}, "score": member_score, "synthetic": any run trained on synthetic
        data, "warning": SYNTHETIC_WARNING or None}``. An ensemble's kind is that of all its
        runs (``mixed`` when they differ). Never raises.
    """
    path = Path(member_path)
    config, _ = _read(path / CONFIG)
    if (config or {}).get("kind") == "ensemble":
        leaves, error = _leaf_paths(path)
    else:
        leaves, error = [path], None
    runs = {leaf.name: run_provenance(leaf) for leaf in leaves}
    kinds = {p["kind"] for p in runs.values()}
    kind = (UNKNOWN if not kinds or error else next(iter(kinds)) if len(kinds) == 1 else "mixed")
    synthetic = "synthetic" in kinds
    return {"kind": kind, "runs": runs, "score": member_score(path), "synthetic": synthetic,
            "warning": SYNTHETIC_WARNING if synthetic else None, "error": error}


def _score_text(score: dict) -> str:
    if score["auc"] is None:
        return score["what"]
    ci = (f" [{score['low']:.3f}, {score['high']:.3f}]" if score["low"] is not None
          and score["high"] is not None else " (no CI recorded)")
    return f"{score['what']} {score['auc']:.3f}{ci}, protocol {score['protocol_label'] or '?'}"


def card_text(card: dict) -> str:
    """One line for a card: ``"trained on synthetic data (generator v2, seed 0; recorded) · test
    AUC 0.712 [0.61, 0.80], protocol subject"``."""
    runs = list(card["runs"].values())
    if len(runs) == 1:
        p = runs[0]
        detail = []
        if p["kind"] == "synthetic" and p.get("generator_version") is not None:
            detail.append(f"generator v{p['generator_version']}, seed {p.get('generator_seed')}")
        detail.append(p["source"] if p["source"] != UNKNOWN else p["note"])
        data = (f"trained on {p['kind']} data" if p["kind"] != UNKNOWN
                else "training data unknown") + f" ({'; '.join(detail)})"
    elif runs:
        counts: dict[str, int] = {}
        for p in runs:
            counts[p["kind"]] = counts.get(p["kind"], 0) + 1
        data = "its runs trained on " + ", ".join(f"{k} data ({n})" for k, n in sorted(counts.items()))
    else:
        data = f"training data unknown ({card.get('error') or 'no runs'})"
    return f"{data} · {_score_text(card['score'])}"
