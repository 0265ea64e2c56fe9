"""Errors and warnings robustlens raises. Every message says what is wrong and what to do."""

from __future__ import annotations


class RobustLensError(ValueError):
    """Bad input or settings given to robustlens (a ``ValueError``, so generic handlers still catch it)."""


class InputError(RobustLensError):
    """The input tensor does not fit the classifier: shape, dtype, NaN/Inf, or values outside the bounds."""


class LabelError(RobustLensError):
    """Labels out of range, of the wrong length or of a non-integer dtype."""


class ConfigError(RobustLensError):
    """An invalid setting: a negative eps, an unknown norm, a mismatched state directory."""


class UnsafeLoadError(RobustLensError):
    """A checkpoint that needs arbitrary pickle execution was refused (pass the explicit unsafe flag to allow)."""


class CorruptFileError(RobustLensError):
    """A data or model file is truncated, corrupt or fails its checksum (delete it and fetch it again)."""


class StorageError(RobustLensError):
    """A result, checkpoint or report could not be written (a full disk, no permission, a read-only folder); the
    previous file at that path is untouched. ``errno`` and ``reason`` (e.g. "No space left on device") come from the
    operating system's error, which is also the ``__cause__``."""

    def __init__(self, message: str, errno: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.reason = reason or message


class MissingDependencyError(ImportError):
    """An optional package needed by the requested feature is not installed (the message names it)."""


class RobustLensWarning(UserWarning):
    """Something looks wrong but robustlens can proceed (probabilities instead of logits, a model in train mode)."""
