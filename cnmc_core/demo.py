"""The first-start path: a synthetic demo dataset and the paper's four ensemble members.

One call creates the demo dataset under ``artifacts/demo-data`` (with progress); one call
queues the four demo runs (scratch CNN, VGG16-to-block4, ResNet50-to-conv4 v1 and v2, the
members of the paper's ensemble) as detached processes that the queue runs one at a time.
The dashboard's first page calls these; so can a script.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from cnmc_core.workspace.paths import artifacts_dir, demo_data_dir

__all__ = [
    "DEMO_PRESETS",
    "demo_data_root",
    "demo_dataset_exists",
    "create_demo_dataset",
    "queue_demo_runs",
]

# The paper's ensemble members (scratch CNN + VGG16 + ResNet50 v1 + v2), sized for a CPU.
DEMO_PRESETS = ("demo_scratch", "demo_vgg16", "demo_resnet50_v1", "demo_resnet50_v2")


def demo_data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder the demo dataset is written to."""
    return demo_data_dir(root)


def demo_dataset_exists(root: str | os.PathLike | None = None) -> bool:
    """Whether a complete demo dataset is present (its summary file is written last)."""
    return (demo_data_root(root) / ".synth_info.json").is_file()


def create_demo_dataset(root: str | os.PathLike | None = None, seed: int = 0,
                        progress: Callable[[int, int], None] | None = None) -> Path:
    """Generate the default synthetic dataset (Kaggle mirror layout) unless it exists.

    Generated in a temporary folder and renamed into place, so a crash never leaves half a
    dataset that looks complete. Returns the dataset folder.
    """
    import shutil
    import tempfile

    from cnmc_core.data.synth import generate_dataset

    target = demo_data_root(root)
    if demo_dataset_exists(root):
        return target
    base = artifacts_dir(root)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-data.", dir=base))
    try:
        shutil.rmtree(tmp)  # generate_dataset wants to create an empty folder itself
        generate_dataset(tmp, seed=seed, progress=progress)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def queue_demo_runs(root: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
                    presets: tuple[str, ...] = DEMO_PRESETS) -> list[Path]:
    """Create and launch the demo runs (queued; the queue trains one at a time), through the one
    launch path (:func:`cnmc_core.training.launch.start_runs`): every run is checked before
    any is created.

    Args:
        root: the artifacts folder (default ``$CNMC_ARTIFACTS`` or ``./artifacts``).
        data: the dataset (default: the demo dataset of ``root``).
        presets: the presets to run, in launch order.

    Returns:
        The run folders in launch order.

    Raises:
        ConfigError / DataError: a preset cannot run on ``data``; no run was created.
    """
    from cnmc_core.training.config import resolve_config
    from cnmc_core.training.launch import start_runs

    data = Path(data) if data is not None else demo_data_root(root)
    configs = [resolve_config(name, data=str(data)) for name in presets]
    return start_runs(configs, artifacts_dir(root))
