"""A study's results as tables (the Compare page, the report) and text (the CLI).

- :func:`preset_table`: one row per preset (and per fitted ensemble): pooled out-of-fold AUC and
  weighted F1 with their 95% CIs (class-stratified subject bootstrap), the mean and sd over the
  folds, the subjects and images covered;
- :func:`fold_points`: every fold's score, for the dots;
- :func:`paired_matrix`: is the row better than the column? the per-fold difference with the
  corrected t-test's CI and p, and the pooled paired-bootstrap difference; undecided outcomes as
  their reason, never a number;
- :func:`format_study`: all of it as text.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from cnmc_core.study.results import read_results

__all__ = ["preset_table", "fold_points", "paired_matrix", "format_study"]


def _ci(report: dict, metric: str) -> tuple:
    ci = (report.get("ci") or {}).get(metric) or {}
    return report.get(metric), ci.get("low"), ci.get("high")


def preset_table(results: dict, ensembles: bool = True) -> pd.DataFrame:
    """One row per preset (then per ensemble method, with ``ensembles``): ``name``, ``kind``,
    ``auc``, ``auc_low``, ``auc_high``, ``wf1``, ``wf1_low``, ``wf1_high`` (pooled out of fold),
    ``auc_fold_mean``, ``auc_fold_sd``, ``wf1_fold_mean``, ``wf1_fold_sd``, ``n_subjects``,
    ``n_images``."""
    rows = []
    groups = [("preset", results.get("presets") or {})]
    if ensembles and results.get("ensembles"):
        groups.append(("ensemble", results["ensembles"].get("presets") or {}))
    for kind, scores in groups:
        for name, s in scores.items():
            pooled = s["pooled"]
            auc, auc_lo, auc_hi = _ci(pooled, "roc_auc")
            wf1, wf1_lo, wf1_hi = _ci(pooled, "weighted_f1")
            rows.append({"name": name, "kind": kind, "auc": auc, "auc_low": auc_lo,
                         "auc_high": auc_hi, "wf1": wf1, "wf1_low": wf1_lo, "wf1_high": wf1_hi,
                         "auc_fold_mean": s["fold_mean"].get("roc_auc"),
                         "auc_fold_sd": s["fold_sd"].get("roc_auc"),
                         "wf1_fold_mean": s["fold_mean"].get("weighted_f1"),
                         "wf1_fold_sd": s["fold_sd"].get("weighted_f1"),
                         "n_subjects": s["n_subjects"], "n_images": s["n_images"]})
    return pd.DataFrame(rows)


def fold_points(results: dict, ensembles: bool = True) -> pd.DataFrame:
    """Every run's (or fold ensemble's) test score: ``name``, ``fold``, ``seed``, ``roc_auc``,
    ``weighted_f1``."""
    rows = []
    groups = [results.get("presets") or {}]
    if ensembles and results.get("ensembles"):
        groups.append(results["ensembles"].get("presets") or {})
    for scores in groups:
        for name, s in scores.items():
            rows += [{"name": name, **f} for f in s["folds"]]
    return pd.DataFrame(rows, columns=["name", "fold", "seed", "n", "roc_auc", "weighted_f1"])


def paired_matrix(results: dict, metric: str = "roc_auc", ensembles: bool = False
                  ) -> pd.DataFrame:
    """One row per ordered pair (A, B): ``a``, ``b``, ``diff`` (mean per-fold difference A - B),
    ``low``, ``high`` (its corrected 95% CI), ``p`` (corrected t-test, two-sided), ``pooled``
    (the pooled out-of-fold difference), ``pooled_low``, ``pooled_high`` (paired subject
    bootstrap), ``verdict`` (a sentence: better, worse, no clear difference, or why undecided)."""
    source = (results.get("ensembles") or {}).get("comparisons", []) if ensembles \
        else results.get("comparisons", [])
    rows = []
    for c in source:
        if c["metric"] != metric:
            continue
        t, pooled = c["folds"], c["pooled"]
        if t["decided"]:
            if t["p"] < 0.05:
                verdict = f"{c['a']} {'better' if t['estimate'] > 0 else 'worse'} than {c['b']}"
            else:
                verdict = "no clear difference"
        else:
            verdict = f"undecided: {t['reason']}"
        rows.append({"a": c["a"], "b": c["b"], "diff": t["estimate"], "low": t["low"],
                     "high": t["high"], "p": t["p"], "pooled": pooled.get("estimate"),
                     "pooled_low": pooled.get("low"), "pooled_high": pooled.get("high"),
                     "verdict": verdict if "reason" not in pooled else
                     f"{verdict}; pooled: {pooled['reason']}"})
    return pd.DataFrame(rows, columns=["a", "b", "diff", "low", "high", "p", "pooled",
                                       "pooled_low", "pooled_high", "verdict"])


def _f(x, nd=3) -> str:
    return "-" if x is None or x != x else f"{x:.{nd}f}"


def format_study(study_dir: str | os.PathLike) -> str:
    """The study's results as text (the ``study`` verb's summary)."""
    results = read_results(Path(study_dir))
    if results is None:
        return "no results yet (the study has not finished)"
    lines = [f"protocol: {results['protocol_label']}; {results['folds']} folds x "
             f"{len(results['seeds'])} seed(s); scores pooled out of fold over every subject, "
             "95% CI from a class-stratified subject bootstrap"]
    table = preset_table(results)
    lines.append(f"{'':<28} {'AUC [95% CI]':>22} {'wF1 [95% CI]':>22} {'folds AUC':>14} subjects")
    for r in table.itertuples():
        lines.append(f"{r.name[:28]:<28} {_f(r.auc)} [{_f(r.auc_low)}, {_f(r.auc_high)}]  "
                     f"{_f(r.wf1)} [{_f(r.wf1_low)}, {_f(r.wf1_high)}]  "
                     f"{_f(r.auc_fold_mean)}+-{_f(r.auc_fold_sd)} {r.n_subjects:>6}")
    for title, ens in (("presets", False), ("ensembles per fold", True)):
        matrix = paired_matrix(results, "roc_auc", ensembles=ens)
        if matrix.empty:
            continue
        lines.append(f"is A better than B (AUC; per-fold corrected t-test, pooled bootstrap) - "
                     f"{title}:")
        for r in matrix.itertuples():
            if r.a > r.b:
                continue  # each pair once
            lines.append(f"  {r.a} - {r.b}: {_f(r.diff, 4)} [{_f(r.low, 4)}, {_f(r.high, 4)}] "
                         f"p={_f(r.p)}; pooled {_f(r.pooled, 4)} [{_f(r.pooled_low, 4)}, "
                         f"{_f(r.pooled_high, 4)}]: {r.verdict}")
    return "\n".join(lines)
