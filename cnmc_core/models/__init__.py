"""Models: the registry of the paper's networks, their builders, freezing rules, the paper's zoo and safe loading.

Every public name of the subpackage can be imported from it; the submodule is imported
on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module

from cnmc_core.models import zoo  # noqa: F401  (registers the paper's models on import)

_EXPORTS = {
    'ImageNetPreprocess': 'layers',
    'WEIGHTS_CHOICES': 'registry',
    'MOBILENET_V2_SIZES': 'registry',
    'MAX_IMAGE_SIZE': 'registry',
    'ModelSpec': 'registry',
    'register_model': 'registry',
    'list_models': 'registry',
    'model_defaults': 'registry',
    'keras_models_dir': 'registry',
    'imagenet_file_name': 'registry',
    'imagenet_weights_file': 'registry',
    'check_model': 'registry',
    'create_model': 'registry',
    'build_scratch': 'builders',
    'BACKBONE_INITS': 'builders',
    'SCRATCH_ARGS': 'builders',
    'TRANSFER_ARGS': 'builders',
    'backbone_names': 'builders',
    'build_transfer': 'builders',
    'FINE_TUNE_RULES': 'freezing',
    'head_layer_names': 'freezing',
    'backbone_layer_names': 'freezing',
    'set_trainable': 'freezing',
    'CUSTOM_OBJECTS': 'io',
    'load_model': 'io',
    'load_model_cached': 'io',
    'clear_model_cache': 'io',
    'predict_images': 'io',
    'save_model': 'io',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
