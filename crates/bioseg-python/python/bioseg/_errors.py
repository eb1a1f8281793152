"""The exceptions bioseg raises: one base class, ``bioseg.Error``, and a subclass per kind of
problem that is also the matching built-in exception, so ``except ValueError`` or ``except
FileNotFoundError`` catch them as well. Messages are the CLI's one-line messages."""


class Error(Exception):
    """Base class of every error bioseg raises."""


class InputError(Error, ValueError):
    """Arguments or data that do not fit the model or the function (shape, channels, values)."""


class ModelError(Error, ValueError):
    """A model file or package that cannot be loaded or used."""


class FileNotFound(Error, FileNotFoundError):
    """A file or folder that does not exist."""


class DataError(Error, OSError):
    """A file that cannot be read, decoded or written."""


class RunError(Error, RuntimeError):
    """The engine failed while running the model."""
