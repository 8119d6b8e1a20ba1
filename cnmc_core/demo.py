"""The first-start path: a synthetic demo dataset and the paper's four ensemble members.

One call creates the demo dataset under ``artifacts/demo-data`` (with progress); one call
queues the four demo runs (scratch CNN, VGG16-to-block4, ResNet50-to-conv4 v1 and v2, the
members of the paper's ensemble) as detached processes that the queue runs one at a time.
Once they are done, the next step is the demo study: the four presets on K subject-grouped
folds (:func:`demo_study_plan` picks K so that it fits :data:`DEMO_STUDY_BUDGET`, from the
presets' measured epoch times), started by :func:`start_demo_study`.
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
    "DEMO_STUDY_BUDGET",
    "demo_runs_done",
    "demo_studies",
    "demo_study_plan",
    "start_demo_study",
]

# The paper's ensemble members (scratch CNN + VGG16 + ResNet50 v1 + v2), sized for a CPU.
DEMO_PRESETS = ("demo_scratch", "demo_vgg16", "demo_resnet50_v1", "demo_resnet50_v2")
#: Seconds the demo study should take on this machine (its folds are chosen to fit).
DEMO_STUDY_BUDGET = 600.0
#: The folds the demo study may use (at least 3: test, val and train).
DEMO_STUDY_FOLDS = (3, 10)


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
                    presets: tuple[str, ...] = DEMO_PRESETS, *, actor=None) -> list[Path]:
    """Create and launch the demo runs (queued; the queue trains one at a time), through the one
    launch path (:func:`cnmc_core.training.launch.start_runs`): every run is checked before
    any is created.

    Args:
        root: the artifacts folder (default ``$CNMC_ARTIFACTS`` or ``./artifacts``).
        data: the dataset (default: the demo dataset of ``root``).
        presets: the presets to run, in launch order.
        actor: who launches them (None: the local OS user); a viewer is refused.

    Returns:
        The run folders in launch order.

    Raises:
        AccessError: the actor may not launch runs. ConfigError / DataError: a preset cannot
        run on ``data``; no run was created.
    """
    from cnmc_core.training.config import resolve_config
    from cnmc_core.training.launch import start_runs

    data = Path(data) if data is not None else demo_data_root(root)
    configs = [resolve_config(name, data=str(data)) for name in presets]
    return start_runs(configs, artifacts_dir(root), actor=actor)


def demo_runs_done(experiments) -> bool:
    """Whether every demo preset has a completed run in ``experiments`` (the listing)."""
    runs = experiments[(experiments["kind"] == "run") & (experiments["state"] == "completed")]
    return set(DEMO_PRESETS) <= set(runs["preset"].dropna())


def demo_studies(studies):
    """The studies of exactly the demo presets among ``studies`` (the frame of
    :func:`cnmc_core.study.listing.list_studies`, with its columns also when it is empty)."""
    mask = studies["presets"].map(lambda p: sorted(p or ()) == sorted(DEMO_PRESETS))
    return studies.loc[mask.astype(bool)]


def demo_study_plan(experiments=None, budget: float = DEMO_STUDY_BUDGET,
                    presets: tuple[str, ...] = DEMO_PRESETS,
                    data: str | os.PathLike | None = None) -> dict:
    """The demo study's folds: the most (3 to 10) whose runs, trained one at a time, are
    expected to fit ``budget`` seconds, from each preset's measured epoch time
    (:func:`cnmc_core.training.timing.preset_timing`: the completed runs of the workspace, else
    the documented figure). A run of a K-fold study trains on K - 2 folds of K, so more folds
    mean more and longer runs; with none fitting, 3 folds. With ``data``, K is at most the
    subjects of its smaller class (each fold needs a subject of each class).

    Returns:
        ``{"folds", "seconds" (expected), "runs", "per_preset" ({preset: seconds of one run}),
        "sources" ({preset: where its epoch time comes from}), "budget"}``.

    Raises:
        ConfigError: a preset without any epoch time (neither measured nor documented).
    """
    from cnmc_core.exceptions import ConfigError
    from cnmc_core.training.config import load_preset
    from cnmc_core.training.timing import (
        expected_run_seconds,
        preset_timing,
        run_epochs,
    )

    timings, epochs = {}, {}
    for name in presets:
        timing = preset_timing(name, experiments)
        if timing is None:
            raise ConfigError(f"No epoch time is known for preset {name!r}: train one run of it "
                              "first.")
        timings[name], epochs[name] = timing, run_epochs(load_preset(name))
    low, high = DEMO_STUDY_FOLDS
    if data is not None:
        from cnmc_core.data.manifest import resolve_manifest
        from cnmc_core.study.plan import subjects_per_class

        high = max(low, min(high, *subjects_per_class(resolve_manifest(str(data), verify=False))
                            .values()))

    def cost(k: int) -> tuple[float, dict]:
        per = {n: expected_run_seconds(timings[n], epochs[n], (k - 2) / k) for n in presets}
        return k * sum(per.values()), per

    folds = low
    for k in range(low, high + 1):
        if cost(k)[0] <= budget:
            folds = k
    seconds, per = cost(folds)
    return {"folds": folds, "seconds": seconds, "runs": folds * len(presets), "per_preset": per,
            "sources": {n: timings[n].source for n in presets}, "budget": budget}


def start_demo_study(root: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
                     folds: int = 5, presets: tuple[str, ...] = DEMO_PRESETS, *,
                     actor=None) -> Path:
    """Check and start the demo study (``presets`` x ``folds`` subject-grouped folds x 1 seed on
    the local queue) through :func:`cnmc_core.study.store.start_study`: its coordinator is a
    detached process. Returns the study folder.

    ``actor``: who launches it (None: the local OS user); a viewer is refused.

    Raises:
        AccessError: the actor may not launch studies. ConfigError / DataError: the study is
        refused (nothing was created).
    """
    from cnmc_core.study.plan import plan_study
    from cnmc_core.study.store import start_study

    data = Path(data) if data is not None else demo_data_root(root)
    plan = plan_study(list(presets), data=data, folds=folds, seeds=1, artifacts=root)
    return start_study(plan, artifacts_dir(root), actor=actor)
