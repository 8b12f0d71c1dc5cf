"""Errors a user can meet. The CLI prints them as one line and exits with code 2."""


class GenvaeError(Exception):
    """Base class: the message says what was wrong and what to do."""


class ConfigError(GenvaeError):
    """A configuration key or value is invalid."""


class PluginError(GenvaeError):
    """An unknown plugin name, a name clash, or a broken plugin."""


class RunDirError(GenvaeError):
    """The run directory is missing, incomplete, or already exists."""


class DataError(GenvaeError):
    """Data files are missing or unreadable."""


class NonFiniteLossError(GenvaeError):
    """A loss term became inf or NaN during training."""


class EvaluationError(GenvaeError):
    """An evaluation during training (``train.eval``) failed; training stopped at a checkpoint."""


class DataChangedWarning(UserWarning):
    """A resumed run's data has the size it was trained on but other content."""


class TrainingAdvice(UserWarning):
    """A dataset's advice on how to train on it (e.g. images smaller than the resolution asked
    for): shown when a run is set up, not each time a trained run is reopened."""


def require_positive(section: str, **sizes: int) -> None:
    """Refuse layer widths / latent sizes below 1 (``section.name must be a positive integer``)."""
    for name, value in sizes.items():
        if int(value) < 1:
            raise ConfigError(f"{section}.{name} must be a positive integer, got {value}")


def shell_quote(path: object) -> str:
    """A path as one shell word, for the commands that messages tell the user to run."""
    import shlex

    return shlex.quote(str(path))
