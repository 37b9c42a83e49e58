"""The one base class of every error a stage reports as a single ``error: ...`` line instead of a traceback.

Why a module of its own: :mod:`affine.stage` catches these for every stage, and importing each error from the module
that raises it (the model loader, the chat template, the sandbox) made every stage import -- and so, in ``dvc.yaml``,
depend on -- code it never runs.  Each error still lives beside its code and subclasses this.
"""

from __future__ import annotations


class StageError(Exception):
    """A problem the user can fix (a param, a missing file, a tool to install); the message says what, in one line."""
