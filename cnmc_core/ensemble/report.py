"""The honest report of ensemble methods: each fitted on val and scored on the untouched test
split, with subject-bootstrap CIs and the paired difference against equal weights, beside the
paper's figures (labelled leaky).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from cnmc_core.ensemble.align import AlignedPredictions
from cnmc_core.ensemble.combiners import Combiner, MeanEnsemble
from cnmc_core.ensemble.methods import DEFAULT_METHODS, make_combiner, method_params
from cnmc_core.metrics.bootstrap import full_report, paired_bootstrap_diff
from cnmc_core.metrics.classification import weighted_f1
from cnmc_core.metrics.report import binary_report

__all__ = ["PAPER_RESULTS", "METHOD_NOTES", "score_methods", "format_report"]

#: The paper's ensemble results (test, its own random split by image: leaky), for display.
PAPER_RESULTS = (
    {"method": "paper: average", "protocol": "paper (leaky: split by image)",
     "test_weighted_f1": 0.9503, "precision_hem": 0.9567, "precision_all": 0.9482,
     "recall_hem": 0.8894, "recall_all": 0.9805, "test_auc": 0.98},
    {"method": "paper: GA weights", "protocol": "paper (leaky: split by image)",
     "test_weighted_f1": 0.9552, "precision_hem": 0.9478, "precision_all": 0.9590,
     "recall_hem": 0.9138, "recall_all": 0.9756, "test_auc": None},
)


#: What a reader of a method's row must know, printed under the table.
METHOD_NOTES = {
    "ga": ("ga: the paper's GA with its notebook's operators; one change: a mutated child is "
           "renormalised (the notebook drops the renormalised vector, so its weights may leave "
           "the simplex); its fitness calls ALL above 0.5 (np.rint, a tie is HEM), the row is "
           "scored at prob >= its threshold"),
    "ga_mean": ("ga_mean: this project's earlier GA variant (whole-vector average crossover, "
                "mutation of any child, fitness at prob >= 0.5), not the paper's"),
    "stacking": ("stacking: predictions from the fitted logistic regression; weights shown are "
                 "its normalised positive coefficients"),
}


def score_methods(
    aligned: AlignedPredictions,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    threshold: float | str = 0.5,
    seed: int = 0,
    n_boot: int = 1000,
    params: dict[str, dict] | None = None,
    include_members: bool = True,
    on_fit: Callable[[str], Any] | None = None,
) -> tuple[list[dict], dict[str, Combiner]]:
    """Fit each method on val, score it on test, and set it against equal weights.

    Args:
        aligned: the members' predictions, aligned on the same images.
        methods: method names (:data:`~cnmc_core.ensemble.methods.COMBINERS`), each fitted once.
        threshold: the threshold rule every method's threshold is chosen by, on val.
        seed: seeds the GAs, the random search and the bootstrap.
        n_boot: bootstrap resamples of the CIs (0: none).
        params: extra parameters by method name.
        include_members: also one row per member alone.
        on_fit: called with a method's name before it is fitted.

    Every row: ``method``, ``kind`` (``member``/``ensemble``), ``weights`` (by member),
    ``threshold``, ``val_weighted_f1`` (on the data it was fitted on: optimistic), test
    ``test_weighted_f1``, ``precision_hem/all``, ``recall_hem/all``, ``test_auc``, ``test_ci``
    (bootstrap CI of weighted F1, by subject when subjects are known) and ``diff_vs_mean``
    (paired bootstrap of test weighted F1 minus equal weights', same threshold rule; None for
    a member row and without the bootstrap), and ``note`` (:data:`METHOD_NOTES`). Member rows use each member's own threshold. ``on_fit(method)``, when given, is
    called before each method is fitted (progress for a tracked search).

    Returns:
        ``(rows, fitted)``: the table and the fitted combiners by method name.
    """
    val, test = aligned.splits["val"], aligned.splits["test"]
    subjects = test.subject
    rows: list[dict] = []

    def row(name, kind, val_prob, test_prob, t, weights, note=""):
        rep = binary_report(test.y, test_prob, t)
        ci = full_report(test.y, test_prob, t, subjects, n_boot=n_boot, seed=seed)["ci"] \
            if n_boot else None
        return {
            "method": name, "kind": kind,
            "weights": dict(zip(aligned.members, map(float, weights))) if weights is not None
            else None,
            "threshold": float(t),
            "val_weighted_f1": weighted_f1(val.y, val_prob, t),
            "test_weighted_f1": rep["weighted_f1"],
            "precision_hem": rep["hem"]["precision"], "precision_all": rep["all"]["precision"],
            "recall_hem": rep["hem"]["recall"], "recall_all": rep["all"]["recall"],
            "test_auc": rep["roc_auc"],
            "test_ci": None if ci is None else {
                "low": ci["weighted_f1"]["low"], "high": ci["weighted_f1"]["high"],
                "unit": ci["unit"], "n_units": ci["n_units"], "n_boot": ci["n_boot"]},
            "diff_vs_mean": None, "protocol": aligned.split_protocol, "note": note,
            "_test_prob": test_prob,
        }

    if include_members:
        for j, name in enumerate(aligned.members):
            rows.append(row(f"member:{name}", "member", val.probs[:, j], test.probs[:, j],
                            aligned.thresholds[j], None))
    fitted: dict[str, Combiner] = {}
    mean = MeanEnsemble(threshold=threshold).fit(val.probs, val.y)
    mean_prob = mean.predict_proba(test.probs)
    for method in dict.fromkeys(methods):
        if on_fit is not None:
            on_fit(method)
        comb = mean if method == "mean" else make_combiner(
            method, **method_params(method, seed, threshold, params)).fit(val.probs, val.y)
        fitted[method] = comb
        note = METHOD_NOTES.get(method, "")
        r = row(method, "ensemble", comb.predict_proba(val.probs), comb.predict_proba(test.probs),
                comb.threshold_, comb.weights_, note)
        if n_boot:
            d = paired_bootstrap_diff(test.y, r["_test_prob"], mean_prob, subjects,
                                      threshold=(comb.threshold_, mean.threshold_),
                                      n_boot=n_boot, seed=seed)
            r["diff_vs_mean"] = {k: d[k] for k in ("estimate", "low", "high", "p_a_not_better")}
        rows.append(r)
    for r in rows:
        r.pop("_test_prob")
    return rows, fitted


def _f(x, nd=4) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def format_report(rows: list[dict], *, chosen: str | None = None, paper: bool = True) -> str:
    """The comparison table as text (one line per row, the chosen method marked ``*``), with the
    paper's figures below, labelled with their protocol."""
    head = (f"{'method':<24} {'thr':>5} {'val wF1':>8} {'test wF1':>8} {'95% CI':>17} "
            f"{'P hem':>6} {'P all':>6} {'R hem':>6} {'R all':>6} {'AUC':>6} "
            f"{'vs mean [95% CI]':>26}  weights")
    lines = [head, "-" * len(head)]
    for r in rows:
        ci = r.get("test_ci")
        ci_txt = f"[{_f(ci['low'])}, {_f(ci['high'])}]" if ci else "-"
        d = r.get("diff_vs_mean")
        d_txt = f"{d['estimate']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" if d else "-"
        w = r.get("weights")
        w_txt = " ".join(f"{k}={v:.3f}" for k, v in w.items()) if w else ""
        name = r["method"] + (" *" if r["method"] == chosen else "")
        lines.append(
            f"{name[:24]:<24} {_f(r['threshold'], 3):>5} {_f(r['val_weighted_f1']):>8} "
            f"{_f(r['test_weighted_f1']):>8} {ci_txt:>17} {_f(r['precision_hem'], 3):>6} "
            f"{_f(r['precision_all'], 3):>6} {_f(r['recall_hem'], 3):>6} "
            f"{_f(r['recall_all'], 3):>6} {_f(r['test_auc'], 3):>6} {d_txt:>26}  {w_txt}"
        )
    notes = sorted({r["note"] for r in rows if r.get("note")})
    units = {r["test_ci"]["unit"] for r in rows if r.get("test_ci")}
    if rows:
        lines.append(f"protocol: {rows[0]['protocol']}; val wF1 is measured on the data each "
                     "method was fitted on (optimistic); test is untouched"
                     + (f"; CIs resample {'/'.join(sorted(units))}s" if units else ""))
    for note in notes:
        lines.append(f"note: {note}")
    if paper:
        for p in PAPER_RESULTS:
            lines.append(
                f"{p['method']:<24} {'0.5':>5} {'-':>8} {p['test_weighted_f1']:>8.4f} {'-':>17} "
                f"{p['precision_hem']:>6.3f} {p['precision_all']:>6.3f} {p['recall_hem']:>6.3f} "
                f"{p['recall_all']:>6.3f} {_f(p['test_auc'], 3):>6} {'-':>26}  "
                f"(the paper's figure; protocol {p['protocol']})"
            )
    return "\n".join(lines)
