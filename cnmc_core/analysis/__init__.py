"""Analysis: experiment tables, learning curves, error overlap, error sets and every figure a page draws.

Every public name of the subpackage can be imported from it; the submodule is imported
on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    'runs_table': 'experiments',
    'default_selection': 'experiments',
    'metrics_table': 'experiments',
    'confusion_frame': 'experiments',
    'row_normalised': 'experiments',
    'confusion_difference': 'experiments',
    'load_curve_points': 'experiments',
    'flatten_config': 'experiments',
    'read_configs': 'experiments',
    'config_diff': 'experiments',
    'read_log_tail': 'experiments',
    'ema': 'curves',
    'debiased_ema': 'curves',
    'history_frame': 'curves',
    'history_metrics': 'curves',
    'smooth_curves': 'curves',
    'stage_boundaries': 'curves',
    'correctness_matrix': 'errors',
    'miss_histogram': 'errors',
    'miss_intersections': 'errors',
    'unique_correct': 'errors',
    'unique_wrong': 'errors',
    'per_class_breakdown': 'errors',
    'pairwise_diversity': 'errors',
    'analyse_errors': 'errors',
    'format_error_summary': 'errors',
    'CLASS_FILTERS': 'error_sets',
    'ErrorSet': 'error_sets',
    'filter_class': 'error_sets',
    'histogram_set': 'error_sets',
    'intersection_set': 'error_sets',
    'unique_set': 'error_sets',
    'gallery_rows': 'error_sets',
    'CLASS_COLORS': 'charts',
    'DIVERSITY_METRICS': 'charts',
    'miss_histogram_figure': 'charts',
    'upset_figure': 'charts',
    'diversity_matrix': 'charts',
    'diversity_figure': 'charts',
    'confusion_figure': 'charts',
    'roc_figure': 'charts',
    'selected_keys': 'charts',
    'RUN_PALETTE': 'run_charts',
    'run_color': 'run_charts',
    'learning_curve_figure': 'run_charts',
    'live_curves_figure': 'run_charts',
    'run_confusion_figure': 'run_charts',
    'roc_pr_figures': 'run_charts',
    'subject_counts_figure': 'run_charts',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
