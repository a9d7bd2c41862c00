#!/usr/bin/env python3
"""Corrupt the raw shuttles table on purpose, to show data validation failing.

Used by run-loop.sh when KEDRO_INJECT_BAD_DATA=1. In the CSV given (default
data/01_raw/shuttles.csv) it
  - makes the price of some rows negative ("$1,234.5" becomes "-$1,234.5"), which
    preprocessing parses into a negative price (model_input_table's suite wants > 0), and
  - appends copies of some rows, so their shuttle ids are duplicated (the shuttles suite
    wants unique ids).
Only the standard library; the file is rewritten in place. Run it on freshly generated
data (run-loop.sh regenerates before each injection): applied twice, it corrupts twice.

    python docker/inject_bad_data.py [CSV] [--negative-fraction 0.05] [--duplicates 25]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path


def corrupt(path: Path, negative_fraction: float, duplicates: int) -> tuple[int, int]:
    """Corrupt ``path`` in place; return (rows with a negative price, duplicated rows)."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    missing = {"id", "price"} - set(fields)
    if missing:
        raise ValueError(f"{path} has no column {', '.join(sorted(missing))}: is it the raw shuttles table?")
    if not rows:
        raise ValueError(f"{path} has no rows")

    step = max(1, round(1 / negative_fraction)) if negative_fraction > 0 else 0
    negative = 0
    if step:
        for row in rows[::step]:
            price = row["price"].strip()
            if price and not price.startswith("-"):
                row["price"] = f"-{price}"
                negative += 1
    copies = [dict(row) for row in rows[: min(duplicates, len(rows))]]

    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows + copies)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return negative, len(copies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", nargs="?", type=Path, default=Path("data/01_raw/shuttles.csv"))
    parser.add_argument("--negative-fraction", type=float, default=0.05, help="share of rows whose price turns negative (0 to 1)")
    parser.add_argument("--duplicates", type=int, default=25, help="rows appended again with the same id")
    args = parser.parse_args(argv)
    if not 0 <= args.negative_fraction <= 1 or args.duplicates < 0:
        parser.error("--negative-fraction must be within 0..1 and --duplicates 0 or more")
    if not args.csv.is_file():
        print(f"inject_bad_data: {args.csv} does not exist: generate the raw data first", file=sys.stderr)
        return 1
    negative, duplicated = corrupt(args.csv, args.negative_fraction, args.duplicates)
    print(f"inject_bad_data: {args.csv}: {negative} negative prices, {duplicated} duplicated ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
