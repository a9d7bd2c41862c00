"""In-memory size (bytes) and row count of the data a node loads or saves.

Exact and O(1) per column for numeric, boolean, categorical and Arrow-backed columns (pandas'
default string dtype when pyarrow is installed). Columns of Python objects (``object`` dtype,
or strings stored as Python objects) would need a walk over every value, about 0.1 s per
million rows, so their size is estimated from an evenly spaced sample of
:data:`OBJECT_SAMPLE` values. numpy arrays, pyarrow tables, bytes and strings are exact;
lists, tuples and dicts add up their items (at most :data:`CONTAINER_ITEMS` of them). Any
other object (a fitted model, say) is measured by its pickled size, streamed into a byte
counter so that no copy is made; objects that cannot be pickled fall back to
``sys.getsizeof``, which counts the object itself but not what it refers to.

Rows are reported for tabular data only (DataFrames, Series, arrays, Arrow tables).
"""

from __future__ import annotations

import pickle
import sys
from typing import Any, NamedTuple

import numpy as np

OBJECT_SAMPLE = 1000
CONTAINER_ITEMS = 10_000


class DataSize(NamedTuple):
    bytes: int | None
    rows: int | None


def measure(data: Any) -> DataSize:
    """Size in bytes and rows of ``data``; either may be None when it does not apply."""
    if data is None:
        return DataSize(None, None)
    return DataSize(_bytes_of(data, depth=0), _rows_of(data))


def _rows_of(data: Any) -> int | None:
    if _is_instance(data, "pandas", "DataFrame", "Series") or _is_instance(data, "pyarrow", "Table", "RecordBatch"):
        return len(data)
    if isinstance(data, np.ndarray) and data.ndim:
        return int(data.shape[0])
    return None


def _bytes_of(data: Any, depth: int) -> int:
    if _is_instance(data, "pandas", "DataFrame"):
        return _frame_bytes(data)
    if _is_instance(data, "pandas", "Series"):
        return _array_payload(data) + _array_payload(data.index)
    if isinstance(data, np.ndarray):
        return _array_payload(data)
    if _is_instance(data, "pyarrow", "Table", "RecordBatch"):
        return int(data.nbytes)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return len(data)
    if isinstance(data, str):
        return len(data.encode("utf-8", errors="surrogatepass"))
    if depth < 3 and isinstance(data, (list, tuple, dict)):
        items = list(data.values()) if isinstance(data, dict) else data
        counted = items[:CONTAINER_ITEMS]
        payload = sum(_bytes_of(item, depth + 1) for item in counted)
        if len(items) > len(counted):
            payload = int(payload * len(items) / len(counted))
        return sys.getsizeof(data) + payload
    return _pickled_bytes(data)


class _ByteCounter:
    def __init__(self) -> None:
        self.count = 0

    def write(self, chunk: bytes) -> int:
        self.count += len(chunk)
        return len(chunk)


def _pickled_bytes(data: Any) -> int:
    counter = _ByteCounter()
    try:
        pickle.dump(data, counter, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - any object may refuse pickling in its own way
        return sys.getsizeof(data)
    return counter.count


def _is_instance(data: Any, module: str, *names: str) -> bool:
    # Only look at libraries already imported: measuring must never import pandas or pyarrow.
    library = sys.modules.get(module)
    return library is not None and isinstance(data, tuple(getattr(library, name) for name in names))


def _frame_bytes(frame: Any) -> int:
    arrays = _block_arrays(frame)
    if arrays is None:
        arrays = [frame.iloc[:, position].array for position in range(frame.shape[1])]
    return _array_payload(frame.index) + sum(_array_payload(array) for array in arrays)


def _block_arrays(frame: Any) -> list[Any] | None:
    """The arrays that hold a DataFrame's data (2-D numpy blocks, 1-D extension arrays).

    pandas has no public accessor for them but building one Series per column, which costs
    10-20 µs a column and, measured in a running pipeline, tripled this hook's cost per load
    and save (its budget is 0.1 ms). The block manager's ``arrays`` hold the same bytes and
    take about a microsecond. This is the one place that reaches into pandas; if a release
    moves it, the public path (a Series per column) takes over.
    """
    arrays = getattr(getattr(frame, "_mgr", None), "arrays", None)
    return list(arrays) if isinstance(arrays, (list, tuple)) else None


def _array_payload(array: Any) -> int:
    """Bytes of a numpy or pandas array, Series or Index, with the objects it points to."""
    dtype = getattr(array, "dtype", None)
    # A Series' .array wraps numpy object arrays in an extension type: look through it.
    if dtype == object or getattr(dtype, "numpy_dtype", None) == object:
        values = np.asarray(array)
        return int(values.nbytes) + _sampled_payload(values.ravel())
    return int(array.nbytes)


def _sampled_payload(values: np.ndarray) -> int:
    """Estimated bytes of the Python objects an object array points to (beyond its pointers)."""
    count = len(values)
    if count == 0:
        return 0
    step = max(1, count // OBJECT_SAMPLE)
    sample = values[::step]
    return int(sum(sys.getsizeof(value) for value in sample) * count / len(sample))
