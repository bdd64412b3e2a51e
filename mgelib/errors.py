"""The errors and warnings mgelib raises on bad input, in one place.

Every class subclasses the built-in a caller would already catch (``ValueError``,
``FileNotFoundError``, ``TypeError``, ``RuntimeError``), so ``except ValueError`` keeps working;
the subclasses only let a caller (or a test) tell one kind of refusal from another. Messages name
the culprit (the key, the file, the parameter) and say what to do (CONTRIBUTING.md).

Examples
--------
>>> from mgelib.errors import MaskError
>>> issubclass(MaskError, ValueError)
True
>>> try:
...     raise MaskError("mask '0.weight' holds 0.3; masks are boolean or 0/1")
... except ValueError as err:
...     print(err)
mask '0.weight' holds 0.3; masks are boolean or 0/1
"""

from __future__ import annotations

__all__ = [
    "MgelibError",
    "MaskError",
    "BatchError",
    "WeightError",
    "DataFormatError",
    "PaperDataError",
    "CorruptFileError",
    "MissingRunFileError",
    "GridIncompleteError",
    "LayerCollapseWarning",
]


class MgelibError(Exception):
    """Base of every error mgelib raises on purpose."""


class MaskError(MgelibError, ValueError):
    """A mask set that does not fit the model: keys, shapes or values (not boolean / 0-1)."""


class BatchError(MgelibError, ValueError):
    """A data batch that does not fit the model: labels out of range, wrong dtype or shape."""


class WeightError(MgelibError, ValueError):
    """Model weights that cannot be scored or encoded (NaN or infinite values)."""


class DataFormatError(MgelibError, ValueError):
    """A dataset file that exists but is not in the expected format (the message names it)."""


class PaperDataError(DataFormatError):
    """The authors' tables are incomplete or altered: a missing file, column or rows."""


class CorruptFileError(MgelibError, ValueError):
    """A file of the run store that cannot be read (truncated, or not what its name says)."""


class MissingRunFileError(MgelibError, FileNotFoundError):
    """A run folder lacks a product an earlier pipeline stage writes."""


class GridIncompleteError(MgelibError, RuntimeError):
    """A grid still has runs another process is working on (or that never finished)."""


class LayerCollapseWarning(UserWarning):
    """A mask set keeps no weight in some layer, or no input → output path at all."""
