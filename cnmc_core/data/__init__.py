"""Data: files of a dataset tree, images and their limits, C-NMC names and labels CSV, the manifest scan of C-NMC layouts, splits, preprocessing and its cache, Data page summaries, the synthetic stand-in.

Every public name of the subpackage can be imported from it; the submodule is imported
on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    'MAX_PIXELS': 'images',
    'read_image': 'images',
    'to_rgb': 'images',
    'MAX_UPLOAD_BYTES': 'images',
    'UPLOAD_EXTENSIONS': 'images',
    'UploadedImage': 'images',
    'image_header': 'images',
    'ImageRefused': 'images',
    'MAX_FRAMES': 'images',
    'HEADER_FORMATS': 'images',
    'REASON_EMPTY': 'images',
    'REASON_TOO_LARGE': 'images',
    'REASON_UNDECODABLE': 'images',
    'decode_upload': 'images',
    'check_uploads': 'images',
    'TreeListing': 'files',
    'NotRegularFile': 'files',
    'file_kind': 'files',
    'not_regular_reason': 'files',
    'walk_tree': 'files',
    'open_regular_file': 'files',
    'read_regular_file': 'files',
    'PRELIM_CSV_COLUMNS': 'names',
    'parse_image_name': 'names',
    'read_prelim_labels': 'names',
    'find_labels_csv': 'names',
    'ScanResult': 'manifest',
    'scan_dataset': 'manifest',
    'summarize_manifest': 'manifest',
    'save_manifest': 'manifest',
    'load_manifest': 'manifest',
    'manifest_fingerprint': 'manifest',
    'resolve_manifest': 'manifest',
    'TRANSFORMS': 'splits',
    'AUGMENT_TRANSFORMS': 'splits',
    'check_fractions': 'splits',
    'check_kfold': 'splits',
    'make_split': 'splits',
    'grouped_kfold': 'splits',
    'check_split': 'splits',
    'save_split': 'splits',
    'load_split': 'splits',
    'balance_training': 'splits',
    'apply_transform': 'splits',
    'CACHE_VERSION': 'preprocess',
    'SERIAL_BELOW': 'preprocess',
    'MIN_SIZE': 'preprocess',
    'MAX_SIZE': 'preprocess',
    'crop_to_cell': 'preprocess',
    'clahe_y': 'preprocess',
    'resize': 'preprocess',
    'check_input_size': 'preprocess',
    'preprocess_image': 'preprocess',
    'preprocess_file': 'preprocess',
    'ImageCache': 'preprocess',
    'cache_key': 'preprocess',
    'build_cache': 'preprocess',
    'CLASS_LABELS': 'summary',
    'SCANS_DIR': 'summary',
    'tree_signature': 'summary',
    'scan_is_stored': 'summary',
    'scan_cached': 'summary',
    'class_counts': 'summary',
    'subject_counts': 'summary',
    'split_summary': 'summary',
    'sample_images': 'summary',
    'preprocessing_steps': 'summary',
    'thumbnail': 'summary',
    'DEFAULT_SIZE': 'synth_cells',
    'REFERENCE_SIZE': 'synth_cells',
    'STAIN_BRIGHT_DIR': 'synth_cells',
    'SubjectProfile': 'synth_cells',
    'make_subject_profile': 'synth_cells',
    'render_cell': 'synth_cells',
    'check_render_size': 'synth_cells',
    'SubjectTask': 'synth_cells',
    'render_subject': 'synth_cells',
    'DEFAULT_SUBJECTS_ALL': 'synth',
    'DEFAULT_SUBJECTS_HEM': 'synth',
    'DEFAULT_CELLS_PER_SUBJECT': 'synth',
    'DEFAULT_SEED': 'synth',
    'ROOT_NAME': 'synth',
    'TRAIN_DIR': 'synth',
    'PRELIM_DIR': 'synth',
    'LABELS_CSV_NAME': 'synth',
    'LABELS_CSV_DIR': 'synth',
    'FINAL_DIR': 'synth',
    'INFO_NAME': 'synth',
    'GENERATOR_VERSION': 'synth',
    'ProgressFn': 'synth',
    'SynthSummary': 'synth',
    'default_unseen_subjects': 'synth',
    'plan_dataset': 'synth',
    'generate_dataset': 'synth',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
