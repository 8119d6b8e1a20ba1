"""Training: configs and presets, the Keras backend, the input pipeline and its batches, callbacks, the training loop, evaluation and the one launch path.

Every public name of the subpackage can be imported from it; the submodule is imported
on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    'PRESETS_DIR': 'config',
    'OPTIMIZERS': 'config',
    'SCHEMA': 'config',
    'STAGE_SCHEMA': 'config',
    'RANGES': 'config',
    'STAGE_RANGES': 'config',
    'DEFAULTS': 'config',
    'list_presets': 'config',
    'load_preset': 'config',
    'validate_config': 'config',
    'apply_set': 'config',
    'resolve_config': 'config',
    'DataBundle': 'pipeline',
    'plan_split': 'pipeline',
    'prepare_data': 'pipeline',
    'dihedral': 'batches',
    'CacheBatches': 'batches',
    'make_dataset': 'batches',
    'training_arrays': 'pipeline',
    'split_arrays': 'pipeline',
    'StatusProgress': 'callbacks',
    'HistoryLine': 'callbacks',
    'CancelAtBatch': 'callbacks',
    'make_callbacks': 'callbacks',
    'STARTUP_NOISE': 'backend',
    'BACKEND_PACKAGES': 'backend',
    'configured_backend': 'backend',
    'check_backend': 'backend',
    'resolve_backend': 'backend',
    'check_backend_options': 'backend',
    'select_backend': 'backend',
    'import_backend': 'backend',
    'backend_versions': 'backend',
    'accelerators': 'backend',
    'Runtime': 'backend',
    'prepare_runtime': 'backend',
    'optimizer': 'loop',
    'library_versions': 'loop',
    'train_run': 'loop',
    'EVALUATION_SPLITS': 'evaluate',
    'evaluate_run': 'evaluate',
    'check_config': 'launch',
    'preset_models': 'launch',
    'form_defaults': 'launch',
    'build_run_config': 'launch',
    'start_runs': 'launch',
    'start_run': 'launch',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
