"""Explanations: Grad-CAM / Grad-CAM++, activations, the one way member maps are combined, figures.

Every public name of the subpackage can be imported from it; the submodule is imported
on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    'input_size': 'inputs',
    'single_input': 'inputs',
    'as_batch': 'inputs',
    'to_model_size': 'inputs',
    'spatial_layer': 'inputs',
    'is_spatial': 'inputs',
    'list_feature_layers': 'inputs',
    'default_cam_layer': 'inputs',
    'output_dense': 'inputs',
    'activations': 'activations',
    'dead_channels': 'activations',
    'activation_grid': 'activations',
    'CAM_TARGETS': 'maps',
    'CAM_METHODS': 'maps',
    'ZERO_TOL': 'maps',
    'CamResult': 'cam',
    'normalise_maps': 'maps',
    'gradcam': 'cam',
    'TARGET_MODES': 'gradients',
    'feature_gradients': 'gradients',
    'overlay': 'figure',
    'overlay_panel': 'figure',
    'explanation_panels': 'figure',
    'render_figure': 'figure',
    'ensemble_heatmap': 'maps',
    'EXPLAIN_METHODS': 'members',
    'MemberExplanation': 'members',
    'Explanation': 'members',
    'explain_path': 'members',
    'explain_selection': 'members',
    'leaf_weights': 'members',
    'explain_images': 'members',
    'run_feature_layers': 'members',
    'activation_view': 'members',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
