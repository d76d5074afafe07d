"""The errors labkit raises for a mistake in what it was asked: each message names the value and the fix.

`LabkitError` is their common base. `python -m labkit` prints one line for it (no traceback;
`--debug` shows one); in a notebook it surfaces as a normal exception. Each subclass also derives
from the builtin it refines (ValueError, FileNotFoundError, …), so `except ValueError` still works.
"""

from __future__ import annotations


class LabkitError(Exception):
    """A user's mistake or a damaged input, with a message that says how to fix it. All labs."""


class InputError(LabkitError, ValueError):
    """A value of the wrong type or outside its valid range. All labs."""


class MissingInput(LabkitError, FileNotFoundError):
    """A file, folder or model that is not there, or not what it should be. All labs."""


class CacheError(LabkitError, OSError):
    """The model cache cannot be used as it is (not a folder, read-only, full disk). All labs."""
