"""Metrics: the one classification-metrics implementation (count metrics, curves, the
single-split report) and the class-stratified subject bootstrap.

Every public name of the subpackage can be imported from it; the submodule is imported
on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    'COUNT_METRICS': 'classification',
    'check_labels': 'classification',
    'check_probs': 'classification',
    'check_threshold': 'classification',
    'confusion': 'classification',
    'safe_div': 'classification',
    'metrics_from_counts': 'classification',
    'weighted_f1': 'classification',
    'weighted_f1_many': 'classification',
    'weighted_f1_pred': 'classification',
    'roc_curve_points': 'curves',
    'pr_curve_points': 'curves',
    'roc_auc': 'curves',
    'roc_auc_of_curve': 'curves',
    'average_precision': 'curves',
    'binary_report': 'report',
    'best_f1_threshold': 'curves',
    'sensitivity_threshold': 'curves',
    'bootstrap_ci': 'bootstrap',
    'paired_bootstrap_diff': 'bootstrap',
    'full_report': 'bootstrap',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
