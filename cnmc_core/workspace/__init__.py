"""The workspace (artifacts folder): paths, settings, atomic files, run and ensemble folders, status and heartbeat, the queue, and the listing.

Every public name of the subpackage can be imported from it; the submodule is imported
on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    'artifacts_dir': 'paths',
    'runs_dir': 'paths',
    'ensembles_dir': 'paths',
    'studies_dir': 'paths',
    'cache_dir': 'paths',
    'demo_data_dir': 'paths',
    'artifacts_root': 'paths',
    'SAFE_NAME_RE': 'fileio',
    'atomic_write': 'fileio',
    'atomic_write_text': 'fileio',
    'atomic_write_json': 'fileio',
    'atomic_write_csv': 'fileio',
    'read_json': 'fileio',
    'check_name': 'fileio',
    'json_safe': 'fileio',
    'SETTINGS_FILE': 'settings',
    'load_settings': 'settings',
    'save_settings': 'settings',
    'chosen_dataset': 'settings',
    'set_chosen_dataset': 'settings',
    'chosen_protocol': 'settings',
    'set_chosen_protocol': 'settings',
    'run_path': 'layout',
    'make_unique_folder': 'layout',
    'create_run': 'layout',
    'append_history': 'layout',
    'read_history': 'layout',
    'delete_run': 'layout',
    'resolve_member': 'layout',
    'STALE_SECONDS': 'status',
    'HEARTBEAT_SECONDS': 'status',
    'wall_time': 'status',
    'read_status': 'status',
    'write_status': 'status',
    'proc_start_time': 'status',
    'process_alive': 'status',
    'effective_status': 'status',
    'error_text': 'status',
    'Heartbeat': 'status',
    'check_completed': 'status',
    'QUEUE_DIR': 'queue',
    'spawn_detached': 'queue',
    'launch_run': 'queue',
    'cancel_run': 'queue',
    'cancel_requested': 'queue',
    'queue_slot': 'queue',
    'list_runs': 'listing',
    'EXPERIMENT_COLUMNS': 'listing',
    'list_experiments': 'listing',
    'display_name': 'listing',
    'files_signature': 'listing',
    'workspace_counts': 'listing',
    'STATE_ICONS': 'listing',
    'run_progress': 'listing',
    'experiment_status': 'listing',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
