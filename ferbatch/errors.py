"""Exceptions ferbatch raises, one base class so callers can catch per file or per model.

Messages name the thing and the cause in a user's words: "{thing} | received {x}; expected {y}".
"""

from __future__ import annotations

__all__ = ["FerbatchError", "ConfigError", "ModelError", "DecodeError", "OutputError", "JobAborted"]


class FerbatchError(Exception):
    """Base class of every error ferbatch raises on purpose."""


class ConfigError(FerbatchError, ValueError):
    """A flag, a config value or a registry entry is invalid."""


class ModelError(FerbatchError):
    """A model file is missing, has the wrong sha256, or cannot be parsed or run."""


class DecodeError(FerbatchError):
    """A video cannot be opened or decoded.

    Attributes:
        path: the video file, as given.
        reason: a short explanation a user understands ("not a video", "truncated", ...).
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path} | {reason}")
        self.path = path
        self.reason = reason


class OutputError(FerbatchError):
    """The output directory cannot be written or read back."""


class JobAborted(FerbatchError):
    """The job stopped on an error of the machine (disk full, out of memory, I/O) or a bug while
    processing a shard; what finished is kept and a rerun resumes."""
