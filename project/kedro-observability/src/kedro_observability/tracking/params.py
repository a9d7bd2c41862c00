"""Kedro parameters and names as MLflow accepts them: flat, keyed safely, within MLflow's limits."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger(__name__)

# MLflow's limits (mlflow.utils.validation); the server rejects a whole batch that exceeds one.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_PARAMS_AND_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000

# MLflow allows word characters, ".", "-", " ", "/" and, except on Windows servers, ":".
_OUTSIDE_MLFLOW_KEY = re.compile(r"[^\w.\- /]")


class ParameterTooLongError(ValueError):
    """A parameter value exceeds MLflow's limit and ``mlflow.long_params`` is ``fail``."""


def mlflow_key(name: str) -> str:
    """``name`` as a valid MLflow param, metric or tag key.

    Characters MLflow refuses become ``_``; so do path segments that MLflow would read as
    ``.``/``..`` (it treats keys as file paths in places). Keys over 250 characters are cut
    and end with a hash of the full name, so that two long names stay distinct.
    """
    key = _OUTSIDE_MLFLOW_KEY.sub("_", name)
    key = "/".join(segment if segment not in {"", ".", ".."} else "_" for segment in key.split("/"))
    if key.startswith(".."):
        key = "_" + key
    if len(key) > MAX_KEY_LENGTH:
        key = key[: MAX_KEY_LENGTH - 9] + "_" + _short_hash(name)
    return key


def _short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha1(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:length]


def unique_mlflow_keys(names: Iterable[str]) -> dict[str, str]:
    """Name -> its MLflow key, no two names sharing one, whatever order the names come in.

    Names that :func:`mlflow_key` makes alike (``a%b``, ``a&b`` and ``a_b`` all give ``a_b``):
    the name that already is that key keeps it, the others get ``_`` and 8 hex digits of
    their name's SHA-1 (``a_b_<hash>``); with no such name, all of them do. A name that
    collides with no other keeps its plain key.
    """
    ordered = sorted(set(names))
    claims: dict[str, list[str]] = {}
    for name in ordered:
        claims.setdefault(mlflow_key(name), []).append(name)
    keys: dict[str, str] = {}
    renamed: list[str] = []
    for key, claimants in claims.items():
        if len(claimants) == 1:
            keys[claimants[0]] = key
            continue
        for name in claimants:
            if name == key:
                keys[name] = key
            else:
                renamed.append(name)
    taken = set(keys.values())
    for name in sorted(renamed):
        # A suffixed key that another name already holds (never seen but possible): a longer hash.
        for length in (8, 12, 16, 40):
            key = mlflow_key(f"{name}_{_short_hash(name, length)}")
            if key not in taken:
                break
        keys[name] = key
        taken.add(key)
    return keys


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(dotted.key, leaf)`` for every leaf of nested mappings; lists are leaves."""
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix or "parameters", value


def param_text(value: Any) -> str:
    """A parameter value as text: JSON for lists and mappings, ``str()`` otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, Mapping)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def consumed_params(pipeline: Any, catalog: Any) -> dict[str, Any]:
    """The parameters the pipeline's nodes read (``params:*`` and ``parameters``), flattened."""
    names = sorted({name for node in pipeline.nodes for name in node.inputs if name == "parameters" or name.startswith("params:")})
    flat: dict[str, Any] = {}
    for name in names:
        prefix = "" if name == "parameters" else name[len("params:") :]
        flat.update(flatten(catalog.load(name), prefix))
    return flat


@dataclass
class LoggableParams:
    """Parameters split as the long-value policy decided: params, and tags for the long ones."""

    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def loggable_params(flat: Mapping[str, Any], policy: Literal["truncate", "tag", "fail"]) -> LoggableParams:
    """Keys made valid and unique (:func:`unique_mlflow_keys`), and values over MLflow's limit
    handled by ``policy``.

    ``truncate`` cuts the value to 6000 characters; ``tag`` logs it as the tag
    ``kedro.param.<key>`` instead (tags hold 8000 characters; cut beyond that); ``fail`` raises
    :class:`ParameterTooLongError`. Every long value is reported in one warning.
    """
    result = LoggableParams()
    keys = unique_mlflow_keys(flat)
    notes: list[str] = []
    for name, value in flat.items():
        key = keys[name]
        text = param_text(value)
        if len(text) <= MAX_PARAM_VALUE_LENGTH:
            result.params[key] = text
        elif policy == "fail":
            raise ParameterTooLongError(
                f"Parameter '{name}' is {len(text)} characters long; MLflow keeps at most "
                f"{MAX_PARAM_VALUE_LENGTH}. Shorten it, or set mlflow.long_params in "
                "observability.yml to 'truncate' (cut it) or 'tag' (log it as a tag)."
            )
        elif policy == "tag":
            tag = mlflow_key(f"kedro.param.{key}")
            result.tags[tag] = text[:MAX_TAG_VALUE_LENGTH]
            kept = "all of it" if len(text) <= MAX_TAG_VALUE_LENGTH else f"the first {MAX_TAG_VALUE_LENGTH}"
            notes.append(f"'{name}' ({len(text)} characters) went to the tag '{tag}', which keeps {kept}")
        else:
            result.params[key] = text[:MAX_PARAM_VALUE_LENGTH]
            notes.append(f"'{name}' ({len(text)} characters) was cut to {MAX_PARAM_VALUE_LENGTH}")
    if notes:
        logger.warning(
            "kedro_observability: MLflow params hold at most %d characters: %s. "
            "mlflow.long_params in observability.yml chooses between truncate, tag and fail.",
            MAX_PARAM_VALUE_LENGTH,
            "; ".join(notes),
        )
    return result


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
