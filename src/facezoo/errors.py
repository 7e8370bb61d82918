"""Errors a user can cause. Each message says what went wrong, where (file, record, key) and how to fix it.

The CLI prints a FacezooError's message without a traceback and exits with status 2.
"""


class FacezooError(Exception):
    """Base of every error facezoo raises for bad input or configuration."""


class ConfigError(FacezooError):
    """A recipe, override or argument is invalid (unknown key, wrong type, bad value)."""


class DataError(FacezooError):
    """A data file is missing, corrupt, truncated or of the wrong format."""


class ModelError(FacezooError):
    """A model name, checkpoint or state dict cannot be used."""


class NoFaceError(DataError):
    """An image in which the detector found no face where one was required (verify, enroll, identify one)."""
