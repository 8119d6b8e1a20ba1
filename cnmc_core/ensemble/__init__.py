"""Ensembles: aligning members, combiners, the GA, reports, saved folders, the tracked search, live weights and members.

Every public name of the subpackage can be imported from it; the submodule is imported
on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    'MemberPredictions': 'align',
    'SplitData': 'align',
    'AlignedPredictions': 'align',
    'load_predictions': 'align',
    'align_runs': 'align',
    'parse_threshold_rule': 'combiners',
    'choose_threshold': 'combiners',
    'to_simplex': 'combiners',
    'Fitness': 'combiners',
    'Combiner': 'combiners',
    'MeanEnsemble': 'combiners',
    'WeightedAverage': 'combiners',
    'GreedySelection': 'combiners',
    'DirichletSearch': 'combiners',
    'SLSQPWeights': 'combiners',
    'StackingEnsemble': 'combiners',
    'logit_features': 'combiners',
    'stacking_proba': 'combiners',
    'COMBINERS': 'methods',
    'DEFAULT_METHODS': 'methods',
    'make_combiner': 'methods',
    'method_params': 'methods',
    'GA_METHODS': 'genetic',
    'GeneticSearch': 'genetic',
    'GeneticWeights': 'genetic',
    'MeanCrossoverGA': 'genetic',
    'PAPER_RESULTS': 'report',
    'METHOD_NOTES': 'report',
    'score_methods': 'report',
    'format_report': 'report',
    'new_ensemble_id': 'store',
    'base_config': 'store',
    'fitted_config': 'store',
    'ensemble_outputs': 'store',
    'save_ensemble': 'store',
    'HISTORY_FLUSH_SECONDS': 'search',
    'MAX_LINES_PER_RESTART': 'search',
    'GAHistory': 'search',
    'run_search': 'search',
    'SLIDER_METHODS': 'live',
    'METHOD_TITLES': 'live',
    'normalise_weights': 'live',
    'ensemble_probs': 'live',
    'live_reports': 'live',
    'fit_method': 'live',
    'comparison_table': 'live',
    'save_live_ensemble': 'live',
    'saved_ensembles_of': 'live',
    'MAX_NESTING': 'members',
    'MEMBER_FOLDERS': 'members',
    'check_nesting': 'members',
    'member_places': 'members',
    'member_paths': 'members',
    'data_source': 'members',
    'image_paths': 'members',
    'ensemble_weights': 'members',
    'leaf_runs': 'members',
    'group_label': 'members',
    'comparable_groups': 'members',
    'default_members': 'members',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
