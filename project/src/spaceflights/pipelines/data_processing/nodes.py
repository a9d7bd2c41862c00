"""Cleaning and joining of the raw spaceflights tables."""

from __future__ import annotations

import hashlib

import fsspec
import pandas as pd

_CHUNK = 1024 * 1024


def fingerprint_raw_data(companies: str, shuttles: str, reviews: str) -> dict[str, dict[str, object]]:
    """SHA-256 and byte size of each raw file as it lies on disk.

    The arguments are file paths, not tables: the input-path hook replaces them (see
    ``input_paths`` in conf/base/observability.yml).
    """
    fingerprints = {}
    for name, path in {"companies": companies, "shuttles": shuttles, "reviews": reviews}.items():
        if not isinstance(path, str):
            raise TypeError(
                f"fingerprint_raw_data expected the file path of '{name}' but got a "
                f"{type(path).__name__}: is the kedro-observability plugin on and '{name}' "
                "listed under input_paths.fingerprint_raw_data in observability.yml?"
            )
        digest = hashlib.sha256()
        size = 0
        with fsspec.open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        fingerprints[name] = {"path": path, "sha256": digest.hexdigest(), "size_bytes": size}
    return fingerprints


def _is_true(column: pd.Series) -> pd.Series:
    return column == "t"


def _parse_percentage(column: pd.Series) -> pd.Series:
    return column.str.replace("%", "", regex=False).astype(float) / 100


def _parse_money(column: pd.Series) -> pd.Series:
    return column.str.replace("$", "", regex=False).str.replace(",", "", regex=False).astype(float)


def preprocess_companies(companies: pd.DataFrame) -> pd.DataFrame:
    """Ratings as fractions and the IATA flag as a boolean."""
    companies = companies.copy()
    companies["iata_approved"] = _is_true(companies["iata_approved"])
    companies["company_rating"] = _parse_percentage(companies["company_rating"])
    return companies


def preprocess_shuttles(shuttles: pd.DataFrame) -> pd.DataFrame:
    """Check flags as booleans and prices as numbers."""
    shuttles = shuttles.copy()
    shuttles["d_check_complete"] = _is_true(shuttles["d_check_complete"])
    shuttles["moon_clearance_complete"] = _is_true(shuttles["moon_clearance_complete"])
    shuttles["price"] = _parse_money(shuttles["price"])
    return shuttles


def create_model_input_table(shuttles: pd.DataFrame, companies: pd.DataFrame, reviews: pd.DataFrame) -> pd.DataFrame:
    """One row per reviewed shuttle, with its company's attributes."""
    rated_shuttles = shuttles.merge(reviews, left_on="id", right_on="shuttle_id")
    table = rated_shuttles.drop(columns="id").merge(companies, left_on="company_id", right_on="id")
    return table.dropna().reset_index(drop=True)
