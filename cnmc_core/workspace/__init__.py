"""The workspace (artifacts folder): paths, settings, atomic files, run and ensemble folders, status and heartbeat, the queue, per-folder summaries, the listing, its views and progress.

Every public name of the subpackage can be imported from it; the submodule is imported
on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    'ARTIFACTS_ENV': 'paths',
    'artifacts_dir': 'paths',
    'workspace_dir': 'paths',
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
    'json_kind': 'fileio',
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
    'history_text': 'layout',
    'read_history': 'layout',
    'delete_run': 'layout',
    'resolve_member': 'layout',
    'inside_workspace': 'layout',
    'STALE_SECONDS': 'status',
    'HEARTBEAT_SECONDS': 'status',
    'wall_time': 'status',
    'NUMERIC_STATUS_FIELDS': 'status',
    'check_status': 'status',
    'read_status': 'status',
    'write_status': 'status',
    'proc_start_time': 'status',
    'process_alive': 'status',
    'apply_liveness': 'status',
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
    'EXPERIMENT_COLUMNS': 'listing',
    'list_experiments': 'listing',
    'workspace_signature': 'listing',
    'forget_summaries': 'listing',
    'display_name': 'listing',
    'SUMMARY_INDEX': 'listing',
    'read_summary_index': 'listing',
    'MEMBER_COLUMNS': 'views',
    'SKIPPED_COLUMNS': 'views',
    'list_members': 'views',
    'workspace_counts': 'views',
    'short_labels': 'views',
    'SUMMARY_VERSION': 'summary',
    'SUMMARY_FIELDS': 'summary',
    'FolderKind': 'summary',
    'KINDS': 'summary',
    'folder_stamps': 'summary',
    'group_key': 'summary',
    'read_config': 'summary',
    'build_summary': 'summary',
    'read_summary': 'summary',
    'is_fresh': 'summary',
    'save_summary': 'summary',
    'write_summary': 'summary',
    'STATE_ICONS': 'progress',
    'run_progress': 'progress',
    'progress_text': 'progress',
    'experiment_status': 'progress',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
