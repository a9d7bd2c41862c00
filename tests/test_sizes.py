"""Dataset sizes: right for the data pipelines hold, with a documented fallback for the rest."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import kedro_observability.sizes as sizes
from kedro_observability.sizes import measure

ROWS = 20_000


def mixed_frame(rows: int = ROWS) -> pd.DataFrame:
    index = np.arange(rows)
    return pd.DataFrame(
        {
            "id": index,
            "id_again": index,
            "price": np.linspace(0, 1, rows),
            "flag": index % 2 == 0,
            "name": np.where(index % 3 == 0, "short", "a much longer string value"),  # pandas 3: dtype "str"
            "objects": pd.Series([f"object-{value}" for value in index], dtype=object),
            "category": pd.Categorical(np.where(index % 2 == 0, "x", "y")),
            "nullable": pd.array(index, dtype="Int64"),
            "when": pd.date_range("2026-01-01", periods=rows, freq="min"),
        }
    )


def test_a_mixed_frame_measures_what_pandas_counts_deeply() -> None:
    frame = mixed_frame()

    size = measure(frame)

    assert size.rows == ROWS
    # Object columns are estimated from a sample; every other column is exact.
    assert size.bytes == pytest.approx(frame.memory_usage(deep=True, index=True).sum(), rel=0.01)


def test_string_columns_are_counted_with_their_characters() -> None:
    short = pd.DataFrame({"text": ["x"] * ROWS})
    long = pd.DataFrame({"text": ["x" * 200] * ROWS})

    assert measure(long).bytes > measure(short).bytes + 150 * ROWS


@pytest.mark.parametrize(
    "frame",
    [
        mixed_frame().iloc[1000:3000],
        mixed_frame(500).set_index("objects"),
        pd.DataFrame([[1, "a"], [2, "b"]], columns=["same", "same"]),
        pd.DataFrame(),
    ],
    ids=["slice", "object-index", "duplicate-columns", "empty"],
)
def test_the_public_fallback_agrees_with_the_block_path(frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = measure(frame)
    monkeypatch.setattr(sizes, "frame_block_arrays", lambda _frame: None)

    assert measure(frame) == fast
    assert fast.bytes == pytest.approx(frame.memory_usage(deep=True, index=True).sum(), rel=0.01)


def test_series_arrays_and_arrow_tables() -> None:
    series = pd.Series(np.arange(ROWS, dtype=np.float32))
    matrix = np.zeros((ROWS, 4))
    table = pa.table({"a": np.arange(ROWS)})

    assert measure(series) == (series.memory_usage(index=True, deep=True), ROWS)
    assert measure(matrix) == (matrix.nbytes, ROWS)
    assert measure(table) == (table.nbytes, ROWS)
    assert measure(np.float64(1.0)).rows is None


def test_containers_add_up_their_items_and_report_no_rows() -> None:
    frame = mixed_frame(1000)
    array = np.ones(5000)

    size = measure({"frame": frame, "parts": [array, array]})

    assert size.rows is None
    assert size.bytes >= measure(frame).bytes + 2 * array.nbytes


def test_text_and_bytes_count_their_encoded_length() -> None:
    assert measure("héllo").bytes == len("héllo".encode())
    assert measure(b"\x00" * 123).bytes == 123


def test_other_objects_are_measured_by_their_pickled_size() -> None:
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(np.random.default_rng(0).random((50, 30)), np.arange(50))

    assert measure(model).bytes == len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))


def test_unpicklable_objects_have_no_size_rather_than_a_shallow_one() -> None:
    """sys.getsizeof would count the object but not what it refers to: no number is better."""
    lock = threading.Lock()

    assert measure(lock) == (None, None)
    assert measure([lock, b"x" * 100]).bytes is None


def test_none_has_no_size() -> None:
    assert measure(None) == (None, None)
