"""Errors a user can cause. Each message says what went wrong, where (file, record, key) and how to fix it.

The CLI prints a FacezooError's message without a traceback and exits with status 2.
"""


class FacezooError(Exception):
    """Base of every error facezoo raises for bad input or configuration.

    A DataLoader worker re-raises its error in the main process as `type(e)("Caught X in DataLoader worker ...
    Original Traceback ... module.X: message")`; the constructor keeps only the original message, so the CLI shows
    the one clear line, never a worker's traceback.
    """

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str) and "DataLoader worker" in args[0]:
            marker = f"{type(self).__module__}.{type(self).__qualname__}: "
            if "Original Traceback" in args[0] and marker in args[0]:
                args = (args[0].rsplit(marker, 1)[1].strip(),)
        super().__init__(*args)


class ConfigError(FacezooError):
    """A recipe, override or argument is invalid (unknown key, wrong type, bad value)."""


class DataError(FacezooError):
    """A data file is missing, corrupt, truncated or of the wrong format."""


class ModelError(FacezooError):
    """A model name, checkpoint or state dict cannot be used."""


class NoFaceError(DataError):
    """An image in which the detector found no face where one was required (verify, enroll, identify one)."""
