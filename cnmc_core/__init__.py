"""cnmc_core: the library behind the cnmc dashboard and CLI.

Classifies malignant B-lymphoblasts (ALL, ``y = 1``) against normal B cells (HEM, ``y = 0``) in
C-NMC 2019 images and compares the experiments that do it. Importing the package is cheap:
TensorFlow is imported only by the modules that train or explain models.
"""

__version__ = "0.1.0"

from .exceptions import CnmcError, ConfigError, DataError, RunError  # noqa: E402

__all__ = ["__version__", "CnmcError", "ConfigError", "DataError", "RunError"]
