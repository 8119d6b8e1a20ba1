"""Interop: results taken out of the workspace, to MLflow (runs, ensembles, studies) and as a
shared report (one self-contained HTML file, or its PDF).

Every public name of the subpackage can be imported from it; the submodule is imported
on first use, so importing the package stays cheap (MLflow and kaleido load only when used).
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    'STUDY_FILE': 'sources',
    'STUDIES': 'sources',
    'Item': 'sources',
    'protocol_text': 'sources',
    'is_leaky': 'sources',
    'resolve_item': 'sources',
    'resolve_items': 'sources',
    'workspace_items': 'sources',
    'study_runs': 'sources',
    'study_metrics': 'sources',
    'item_facts': 'sources',
    'find_chromium': 'browser',
    'render_pngs': 'browser',
    'print_pdf': 'browser',
    'Payload': 'mlflow_payload',
    'mlflow_key': 'mlflow_payload',
    'param_values': 'mlflow_payload',
    'final_metrics': 'mlflow_payload',
    'build_payload': 'mlflow_payload',
    'MLFLOW_RECORD': 'mlflow_export',
    'ExportResult': 'mlflow_export',
    'check_tracking_uri': 'mlflow_export',
    'export_to_mlflow': 'mlflow_export',
    'read_record': 'mlflow_export',
    'export_table': 'mlflow_export',
    'FORMATS': 'report',
    'build_report': 'report',
    'write_report': 'report',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
