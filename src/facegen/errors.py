"""User-facing errors: anything raised as a FacegenError is printed as one line, without traceback."""


class FacegenError(Exception):
    """A problem the user can fix (bad params, missing data, wrong checkpoint)."""


class DataError(FacegenError):
    """The dataset on disk is missing, partial, corrupt or does not have what params ask for."""


class ConfigError(FacegenError):
    """params.yaml has an unknown key, a wrong type or an out-of-range value."""


class CheckpointError(FacegenError):
    """A checkpoint is truncated, from another architecture, or not a facegen checkpoint."""


class TrainingDivergedError(FacegenError):
    """A loss went NaN/inf, or weights about to be saved are not finite: the run produced garbage."""


class TrackingError(FacegenError):
    """An MLflow run or its artifacts cannot be read back (unknown run, moved or deleted artifacts)."""
