"""The diffbands exception hierarchy.

Every error the package raises on purpose derives from :class:`DiffbandsError`, so a caller (and the CLI)
can tell "your input is wrong" from "diffbands has a bug". Errors about a particular field carry its name
in ``.field`` and start their message with it.
"""

from __future__ import annotations


class DiffbandsError(Exception):
    """Base class of every error raised by diffbands on purpose."""


class ValidationError(DiffbandsError, ValueError):
    """A value handed to a diffbands constructor or function is not acceptable.

    ``field`` names the offending field (e.g. ``"intensity"`` or ``"coords['E']"``).
    """

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class ShapeError(ValidationError):
    """Array shapes do not agree with each other or with their axes."""


class AxisError(ValidationError):
    """A coordinate axis is empty, too short, not 1-D or not strictly monotonic."""


class NonFiniteError(ValidationError):
    """NaN or Inf where finite numbers are required."""


class DTypeError(ValidationError):
    """An array has a dtype diffbands cannot use (complex, object, string, ...)."""


class DataFileError(DiffbandsError, OSError):
    """A file cannot be read or written: missing, truncated, corrupt, or of an unknown layout."""


class DataNotFoundError(DataFileError, FileNotFoundError):
    """A data file or the data folder could not be located."""


class FormatError(DataFileError):
    """A file opened but its content is not of a layout diffbands understands."""


class SolverError(DiffbandsError):
    """A solver was asked to do something it cannot (e.g. ICM on a term without a grid form)."""


class ResourceError(DiffbandsError, MemoryError):
    """A request needs more memory than is available; the message gives the estimate and the limit."""
