"""cnmc_core: the library behind the cnmc dashboard and CLI.

Classifies malignant B-lymphoblasts (ALL, ``y = 1``) against normal B cells (HEM, ``y = 0``) in
C-NMC 2019 images and compares the experiments that do it. Importing the package is cheap:
TensorFlow is imported only by the modules that train or explain models.
"""

import os

__version__ = "0.1.0"

# TensorFlow's C++ start-up messages are noise in a run's log.txt and in the terminal; every
# process that imports the library (CLI, workers, dashboard) inherits this default.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .exceptions import CnmcError, ConfigError, DataError, RunError  # noqa: E402

__all__ = ["__version__", "CnmcError", "ConfigError", "DataError", "RunError"]
