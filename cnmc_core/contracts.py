"""The shared contracts of the project (DESIGN.md), defined once and imported everywhere.

- Labels: ``y = 1`` is ALL (malignant, "cancer", the positive class), ``y = 0`` is HEM
  ("normal"); every stored or shown probability is P(ALL). :data:`CLASSES` is indexed by ``y``.
- The manifest: its columns, the image sources and the image file extensions scanned.
- Splits: :data:`DATA_SPLITS` (``train``/``val``/``test``) that a split protocol assigns, and
  :data:`SCORED_SPLITS` (``val``, ``test``) that every run and ensemble is scored on.
- Split protocols (:data:`PROTOCOLS`): every run records the one it used and every score shown
  names it through :func:`protocol_label`, which marks the protocol that leaks subjects.
- Run and ensemble folders: their file names and the states of ``status.json``.
- Keras backends (:data:`BACKENDS`): every run records the one it trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnmc_core.exceptions import ConfigError

__all__ = [
    "CLASSES",
    "CLASS_TITLES",
    "CLASS_SHORT",
    "LABEL_TO_Y",
    "class_title",
    "MANIFEST_COLUMNS",
    "SOURCES",
    "IMAGE_EXTENSIONS",
    "DATA_SPLITS",
    "SCORED_SPLITS",
    "ProtocolInfo",
    "PROTOCOLS",
    "SPLIT_PROTOCOLS",
    "KFOLD_PROTOCOLS",
    "protocol_info",
    "protocol_label",
    "CONFIG",
    "STATUS",
    "HISTORY",
    "PREDICTIONS",
    "METRICS",
    "MODEL",
    "LOG",
    "SUMMARY",
    "RUN_FILES",
    "FEATURE_RANGES",
    "TENSORBOARD",
    "CANCEL_FLAG",
    "PREDICTION_COLUMNS",
    "STATES",
    "UNRESPONSIVE",
    "ACTIVE_STATES",
    "FINAL_STATES",
    "DAMAGED",
    "BACKENDS",
    "DEFAULT_BACKEND",
]

# --------------------------------------------------------------------------- labels
#: Class names by label: ``CLASSES[y]``; 0 is HEM (normal), 1 is ALL (malignant).
CLASSES = ("hem", "all")
#: How a class is written beside a number or in a legend.
CLASS_TITLES = {"hem": "HEM (normal)", "all": "ALL (cancer)"}
#: The short form, for axis labels and table cells.
CLASS_SHORT = {"hem": "HEM", "all": "ALL"}
LABEL_TO_Y = {"all": 1, "hem": 0}


def class_title(y: int, short: bool = False) -> str:
    """``"ALL (cancer)"`` for ``y = 1`` and ``"HEM (normal)"`` for ``y = 0`` (``ALL``/``HEM``
    with ``short``)."""
    name = CLASSES[int(y)]
    return CLASS_SHORT[name] if short else CLASS_TITLES[name]


# --------------------------------------------------------------------------- manifest
MANIFEST_COLUMNS = ["image_id", "path", "label", "y", "subject", "source", "width", "height"]
SOURCES = ("fold_0", "fold_1", "fold_2", "prelim", "final", "unknown")
IMAGE_EXTENSIONS = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")

# --------------------------------------------------------------------------- splits
DATA_SPLITS = ("train", "val", "test")
SCORED_SPLITS = ("val", "test")


@dataclass(frozen=True)
class ProtocolInfo:
    """A split protocol's name, one-line description and whether it leaks subjects."""

    name: str
    description: str
    leaky: bool

    def label(self) -> str:
        """The protocol as it is shown beside a score, e.g. ``paper (leaky: split by image)``."""
        return f"{self.name} (leaky: split by image)" if self.leaky else self.name


PROTOCOLS = {
    "subject": ProtocolInfo("subject", "subject-disjoint 60/20/20 of subjects, stratified by class", False),
    "paper": ProtocolInfo(
        "paper",
        "the paper's random 60/20/20 split by image over the training folds; cells of one "
        "subject fall in train and test, so scores are inflated",
        True,
    ),
    "official": ProtocolInfo(
        "official", "train fold_0+fold_1, validate fold_2, test the labelled preliminary set", False
    ),
    # k-fold protocols: the runs of a study (fold i is test, fold i + 1 val, the rest train)
    "subject-kfold": ProtocolInfo(
        "subject-kfold", "subject-grouped k-fold, stratified by class at the subject level: fold "
        "i is test, fold i + 1 val", False),
    "image-kfold": ProtocolInfo(
        "image-kfold", "k-fold by image, stratified by class (the paper's split as folds); cells "
        "of one subject fall in train and test, so scores are inflated", True),
}
#: Protocols of one train/val/test split (what a single run, the Data page and `split` offer).
SPLIT_PROTOCOLS = ("subject", "paper", "official")
#: Protocols of K folds: a run of one needs ``kfold = {"k": K, "fold": i}``.
KFOLD_PROTOCOLS = ("subject-kfold", "image-kfold")


def protocol_info(name: str) -> ProtocolInfo:
    """The :class:`ProtocolInfo` of ``name``; an unknown name raises ConfigError."""
    if name not in PROTOCOLS:
        raise ConfigError(
            f"The split protocol must be one of {sorted(PROTOCOLS)}. Got {name!r} instead."
        )
    return PROTOCOLS[name]


def protocol_label(name) -> str:
    """How a protocol is printed beside a score: its :meth:`ProtocolInfo.label` (the leaky one
    says so), or the recorded value as it is when it is not a known protocol ("" for none)."""
    if name in PROTOCOLS:
        return PROTOCOLS[name].label()
    return "" if name is None or name != name else str(name)


# --------------------------------------------------------------------------- run folders
CONFIG, STATUS, HISTORY, PREDICTIONS, METRICS, MODEL, LOG, SUMMARY = (
    "config.json", "status.json", "history.jsonl", "predictions.csv", "metrics.json", "model.keras",
    "log.txt", "summary.json")
#: ``summary.json`` is what the listing shows of a finished folder, rebuilt from the others when
#: missing or stale (:mod:`cnmc_core.workspace.summary`).
RUN_FILES = (CONFIG, STATUS, HISTORY, PREDICTIONS, METRICS, MODEL, LOG, SUMMARY)
#: A run's summary of its training images' hand features (mean, sd), against which new images
#: are z-scored (:mod:`cnmc_core.data.feature_ranges`); absent in runs trained before it existed.
FEATURE_RANGES = "feature_ranges.json"
CANCEL_FLAG = "cancel.request"
#: The run's TensorBoard event files (``train/`` and ``validation/`` under it), scalars per epoch.
TENSORBOARD = "tb"
#: Columns every ``predictions.csv`` has (a ``subject`` column follows where subjects are known).
PREDICTION_COLUMNS = ("image_id", "split", "y", "prob")
#: The states ``status.json`` holds: written by the job itself, or (``cancelled``, ``failed``) by
#: ``cancel`` or the queue for a job they ended. Once a job is ``failed`` or ``cancelled`` it
#: never comes back: its process is ended first, and a job checks its file before every write
#: (:class:`cnmc_core.workspace.status.Heartbeat`).
STATES = ("queued", "running", "completed", "failed", "cancelled")
#: The state liveness gives a queued or running job whose process lives but whose heartbeat is
#: older than ``STALE_SECONDS`` (stopped by SIGSTOP, or hung); never written in ``status.json``.
#: ``cancel`` ends it, and the queue ends it once it is unresponsive past its limit and another
#: run waits for its slot (:data:`cnmc_core.workspace.queue.UNRESPONSIVE_LIMIT`).
UNRESPONSIVE = "unresponsive"
#: States of a job whose process lives (or will start): they can be cancelled, not deleted.
ACTIVE_STATES = ("queued", "running", UNRESPONSIVE)
FINAL_STATES = ("completed", "failed", "cancelled")
#: The state the listing gives a folder it cannot read (never written in ``status.json``).
DAMAGED = "damaged"


# --------------------------------------------------------------------------- Keras backends
#: The Keras 3 backends a run may train, explain and predict on (``KERAS_BACKEND``).
BACKENDS = ("tensorflow", "jax", "torch")
#: Keras' own default, and what a run recorded before runs named their backend trained on.
DEFAULT_BACKEND = "tensorflow"
