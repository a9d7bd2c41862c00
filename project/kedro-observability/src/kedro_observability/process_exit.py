"""The exit of a process that ran a Kedro run: without Python's last garbage collections.

After the ``atexit`` handlers, CPython clears every module and runs full garbage collections
over every object still alive. Kedro, pandas, scikit-learn, Great Expectations and MLflow
leave millions of them, so those collections cost a ``kedro run`` 0.7 s with no plugin and
up to 1.9 s with Great Expectations imported, after its last log line, for nothing: the
memory goes back to the system anyway. :func:`gc.freeze` moves every object into the
permanent generation, which those collections skip; objects are still freed by reference
counting as the modules are cleared.

What it changes: the ``__del__`` of an object that is part of a reference cycle still alive
at exit is not called. Python does not promise to call it then either ("It is not
guaranteed that ``__del__()`` methods are called for objects that still exist when the
interpreter exits", the data model's documentation), and ``atexit`` handlers, ``weakref``
finalizers and logging's shutdown all still run. ``KEDRO_OBSERVABILITY_GC_AT_EXIT=true``
keeps Python's collections.
"""

from __future__ import annotations

import atexit
import gc
import os

from kedro_observability.settings import BOOLEAN_WORDS

FULL_COLLECTIONS_VARIABLE = "KEDRO_OBSERVABILITY_GC_AT_EXIT"

_registered = False


def skip_final_collections() -> None:
    """Freeze the garbage collector when the process exits (once per process)."""
    global _registered
    if _registered:
        return
    _registered = True
    atexit.register(_freeze)


def _freeze() -> None:
    if BOOLEAN_WORDS.get(os.environ.get(FULL_COLLECTIONS_VARIABLE, "").strip().lower(), False):
        return
    gc.freeze()
