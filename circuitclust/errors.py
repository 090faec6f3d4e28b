"""User-facing errors. The CLI prints them as one line (no traceback) and exits with status 2."""


class CircuitclustError(Exception):
    """Bad input or an unavailable resource, with a message that says what to do."""


class ModelNotAvailableError(CircuitclustError):
    """A model spec that cannot be loaded here (offline and not cached, missing folder, bad file)."""


class DataError(CircuitclustError):
    """Empty, malformed or missing data files."""


class PartitionMismatchError(CircuitclustError):
    """A saved partition that does not fit the model or the graphs it is applied to."""
