"""Studies: presets x K subject-grouped folds x S seeds, launched as one unit, their runs pooled
out of fold so that every subject is scored, and every pair of presets compared with paired
tests over the folds (see :mod:`cnmc_core.study.plan` for what a study is).

Every public name of the subpackage can be imported from it; the submodule is imported on first
use, so importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "StudyPlan": "plan",
    "plan_study": "plan",
    "BACKENDS": "plan",
    "StudyRun": "pooling",
    "oof_frame": "pooling",
    "pooled_predictions": "pooling",
    "preset_scores": "pooling",
    "paired_comparisons": "pooling",
    "corrected_ttest": "stats",
    "create_study": "store",
    "read_study": "store",
    "study_runs": "store",
    "study_path": "store",
    "launch_coordinator": "store",
    "run_coordinator": "runner",
    "cancel_study": "runner",
    "write_results": "results",
    "read_results": "results",
    "fold_ensembles": "ensembles",
    "study_aligned": "ensembles",
    "preset_table": "report",
    "fold_points": "report",
    "paired_matrix": "report",
    "format_study": "report",
    "list_studies": "listing",
    "study_of_runs": "listing",
    "completed_studies": "listing",
    "study_progress": "listing",
    "format_studies": "listing",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
