"""In-memory size (bytes) and row count of the data a node loads or saves.

Exact and O(1) per column for numeric, boolean, categorical and Arrow-backed columns (pandas'
default string dtype when pyarrow is installed). Columns of Python objects (``object`` dtype,
or strings stored as Python objects) would need a walk over every value, about 0.1 s per
million rows, so their size is estimated from an evenly spaced sample of
:data:`OBJECT_SAMPLE` values. numpy arrays, pyarrow tables, bytes and strings are exact;
lists, tuples and dicts add up their items (at most :data:`CONTAINER_ITEMS` of them). Any
other object (a fitted model, say) is measured by its pickled size, streamed into a byte
counter so that no copy is made; objects that cannot be pickled fall back to
no size at all: a number that counts the object but not what it refers to would be wrong.

Lazy frames (Spark and Dask DataFrames, polars LazyFrames, Ibis tables) hold a query plan,
not data: sizing them would run the query again, so they get no size and no rows. A polars
DataFrame reports ``estimated_size()`` and its height.

Rows are reported for tabular data only (DataFrames, Series, arrays, Arrow tables).
"""

from __future__ import annotations

import pickle
import sys
from typing import Any, NamedTuple

from kedro_observability.compat import frame_block_arrays

OBJECT_SAMPLE = 1000
CONTAINER_ITEMS = 10_000


class DataSize(NamedTuple):
    bytes: int | None
    rows: int | None


NO_SIZE = DataSize(None, None)

# Libraries whose frames are query plans: their size is unknown until the query runs.
_LAZY_LIBRARIES = frozenset({"pyspark", "dask", "ibis", "daft"})


def measure(data: Any) -> DataSize:
    """Size in bytes and rows of ``data``; either is None when it does not apply or is unknown."""
    if data is None or is_lazy(data):
        return NO_SIZE
    if _is_instance(data, "polars", "DataFrame"):
        return DataSize(int(data.estimated_size()), int(data.height))
    return DataSize(_bytes_of(data, depth=0), _rows_of(data))


def is_lazy(data: Any) -> bool:
    """True for a frame that holds a query plan rather than data (Spark, Dask, polars LazyFrame)."""
    return type(data).__module__.partition(".")[0] in _LAZY_LIBRARIES or _is_instance(data, "polars", "LazyFrame")


def is_opaque(data: Any) -> bool:
    """True when ``data`` would be sized by pickling it (a model, say): worth doing once per run."""
    if data is None or is_lazy(data) or isinstance(data, (bytes, bytearray, memoryview, str, list, tuple, dict)):
        return False
    return not (
        _is_instance(data, "pandas", "DataFrame", "Series")
        or _is_instance(data, "numpy", "ndarray")
        or _is_instance(data, "pyarrow", "Table", "RecordBatch")
        or _is_instance(data, "polars", "DataFrame")
    )


def _rows_of(data: Any) -> int | None:
    if _is_instance(data, "pandas", "DataFrame", "Series") or _is_instance(data, "pyarrow", "Table", "RecordBatch"):
        return len(data)
    if _is_instance(data, "numpy", "ndarray") and data.ndim:
        return int(data.shape[0])
    return None


def _bytes_of(data: Any, depth: int) -> int | None:
    if _is_instance(data, "pandas", "DataFrame"):
        return _frame_bytes(data)
    if _is_instance(data, "pandas", "Series"):
        return _array_payload(data) + _array_payload(data.index)
    if _is_instance(data, "numpy", "ndarray"):
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
        sizes = [_bytes_of(item, depth + 1) for item in counted]
        if any(size is None for size in sizes):
            return None  # one item of unknown size makes the whole unknown, not smaller
        payload = sum(sizes)  # type: ignore[arg-type]
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


def _pickled_bytes(data: Any) -> int | None:
    counter = _ByteCounter()
    try:
        pickle.dump(data, counter, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - any object may refuse pickling in its own way
        return None
    return counter.count


def _is_instance(data: Any, module: str, *names: str) -> bool:
    # Only look at libraries already imported: measuring must never import pandas or pyarrow.
    library = sys.modules.get(module)
    return library is not None and isinstance(data, tuple(getattr(library, name) for name in names))


def _frame_bytes(frame: Any) -> int:
    arrays = frame_block_arrays(frame)
    if arrays is None:
        arrays = [frame.iloc[:, position].array for position in range(frame.shape[1])]
    return _array_payload(frame.index) + sum(_array_payload(array) for array in arrays)


def _array_payload(array: Any) -> int:
    """Bytes of a numpy or pandas array, Series or Index, with the objects it points to."""
    dtype = getattr(array, "dtype", None)
    # A Series' .array wraps numpy object arrays in an extension type: look through it.
    if dtype == object or getattr(dtype, "numpy_dtype", None) == object:
        values = sys.modules["numpy"].asarray(array)
        return int(values.nbytes) + _sampled_payload(values.ravel())
    return int(array.nbytes)


def _sampled_payload(values: Any) -> int:
    """Estimated bytes of the Python objects an object array points to (beyond its pointers)."""
    count = len(values)
    if count == 0:
        return 0
    step = max(1, count // OBJECT_SAMPLE)
    sample = values[::step]
    return int(sum(sys.getsizeof(value) for value in sample) * count / len(sample))
