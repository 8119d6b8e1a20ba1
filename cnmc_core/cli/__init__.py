"""The command line: ``python -m cnmc_core <verb>``."""
