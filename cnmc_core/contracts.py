"""The shared contracts of the project, defined once and imported everywhere.

- Labels: ``y = 1`` is ALL (malignant, the positive class), ``y = 0`` is HEM (normal).
- Manifest columns, image sources and image file extensions.
- Split names: the data splits ``train``/``val``/``test``, and the two splits every run and
  ensemble is scored on (``val``, ``test``).
- Split protocols (``subject``, ``paper``, ``official``) with the one that leaks subjects flagged.
- Run and ensemble folder file names and run states.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnmc_core.exceptions import ConfigError

__all__ = ['CONFIG', 'STATUS', 'HISTORY', 'PREDICTIONS', 'METRICS', 'MODEL', 'LOG', 'RUN_FILES', 'CANCEL_FLAG', 'STATES', 'ACTIVE_STATES', 'IMAGE_EXTENSIONS', 'MANIFEST_COLUMNS', 'SOURCES', 'LABEL_TO_Y', 'DATA_SPLITS', 'ProtocolInfo', 'PROTOCOLS', 'protocol_info', 'PREDICTION_COLUMNS', 'SCORED_SPLITS']

CONFIG, STATUS, HISTORY, PREDICTIONS, METRICS, MODEL, LOG = (
    "config.json", "status.json", "history.jsonl", "predictions.csv", "metrics.json", "model.keras", "log.txt")
RUN_FILES = (CONFIG, STATUS, HISTORY, PREDICTIONS, METRICS, MODEL, LOG)
CANCEL_FLAG = "cancel.request"
STATES = ("queued", "running", "completed", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
IMAGE_EXTENSIONS = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
MANIFEST_COLUMNS = ["image_id", "path", "label", "y", "subject", "source", "width", "height"]
SOURCES = ("fold_0", "fold_1", "fold_2", "prelim", "final", "unknown")
LABEL_TO_Y = {"all": 1, "hem": 0}
DATA_SPLITS = ("train", "val", "test")


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
}


def protocol_info(name: str) -> ProtocolInfo:
    """The :class:`ProtocolInfo` of ``name``; an unknown name raises ConfigError."""
    if name not in PROTOCOLS:
        raise ConfigError(
            f"The split protocol must be one of {sorted(PROTOCOLS)}. Got {name!r} instead."
        )
    return PROTOCOLS[name]


PREDICTION_COLUMNS = ("image_id", "split", "y", "prob")
SCORED_SPLITS = ("val", "test")
