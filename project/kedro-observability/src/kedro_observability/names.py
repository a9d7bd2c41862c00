"""The one function that turns Kedro names into metric label values."""

from __future__ import annotations

import re
from functools import lru_cache

_OUTSIDE_LABEL_ALPHABET = re.compile(r"[^A-Za-z0-9_.-]")


@lru_cache(maxsize=4096)
def sanitize_name(name: str) -> str:
    """Return ``name`` with every character outside ``[A-Za-z0-9_.-]`` replaced by ``_``.

    This is the rule of the stack's contract for the ``project``, ``pipeline``, ``node``
    and ``dataset`` labels. It keeps statsd lines parseable: ``:`` would end the
    metric name, ``,`` would start a new tag, ``[`` would start SignalFX tags and
    ``|``, ``#``, ``@`` or a newline would corrupt the line. An empty name becomes
    ``_`` so that the label never disappears. The result is cached because node and
    dataset names repeat on every run.
    """
    return _OUTSIDE_LABEL_ALPHABET.sub("_", name) or "_"


def is_parameter(dataset_name: str) -> bool:
    """Parameters are not datasets: no dataset metrics for them."""
    return dataset_name == "parameters" or dataset_name.startswith("params:")
