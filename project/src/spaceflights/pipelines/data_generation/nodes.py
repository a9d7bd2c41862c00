"""Deterministic generation of spaceflights-shaped raw data.

The tables look like the raw files of Kedro's spaceflights tutorial (percentages and prices
as text, booleans as "t"/"f", some missing values), so that preprocessing has real work to
do. The shuttle price depends on the features plus noise, so the regressor learns something.
The same ``seed`` and ``n_shuttles`` always give the same tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

LOCATIONS = np.array(["Niue", "Anguilla", "Russian Federation", "Barbados", "Sao Tome and Principe", "Iceland", "Chile", "Mars Base"])
SHUTTLE_TYPES = np.array(["Type V5", "Type F5", "Type V2", "Type Q2"])
ENGINE_TYPES = np.array(["Quantum", "Plasma", "Nuclear"])
ENGINE_VENDORS = np.array(["ThetaBase Services", "Banks, Wood and Phillips", "Rozzo Ltd", "Zelda Engineering"])
CANCELLATION_POLICIES = np.array(["strict", "moderate", "flexible"])


def generate_raw_data(options: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return the raw companies, shuttles and reviews tables for ``options`` (seed, n_shuttles)."""
    n_shuttles = int(options["n_shuttles"])
    if n_shuttles < 10:
        raise ValueError(f"data_generation.n_shuttles must be at least 10, got {n_shuttles}.")
    rng = np.random.default_rng(int(options["seed"]))
    companies = _companies(rng, max(10, n_shuttles // 5))
    shuttles, features = _shuttles(rng, n_shuttles, len(companies))
    reviews, review_rating = _reviews(rng, shuttles["id"].to_numpy())
    rating = companies["_rating"].to_numpy()[shuttles["company_id"].to_numpy() - 1]
    price = (
        120.0 * features["engines"]
        + 45.0 * features["passenger_capacity"]
        + 90.0 * features["crew"]
        + 400.0 * features["d_check_complete"]
        + 250.0 * features["moon_clearance_complete"]
        + 8.0 * np.nan_to_num(rating, nan=80.0)
        + 6.0 * review_rating
        + rng.normal(0.0, 120.0, n_shuttles)
    ).clip(50.0)
    shuttles["price"] = [f"${value:,.1f}" for value in price]
    return companies.drop(columns="_rating"), shuttles, reviews


def _companies(rng: np.random.Generator, n: int) -> pd.DataFrame:
    rating = rng.integers(40, 101, n).astype(float)
    rating[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "company_rating": [f"{value:.0f}%" if not np.isnan(value) else None for value in rating],
            "company_location": rng.choice(LOCATIONS, n),
            "total_fleet_count": rng.integers(1, 50, n).astype(float),
            "iata_approved": rng.choice(np.array(["t", "f"]), n),
            "_rating": rating,
        }
    )


def _shuttles(rng: np.random.Generator, n: int, n_companies: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    features = {
        "engines": rng.integers(1, 5, n),
        "passenger_capacity": rng.integers(1, 13, n),
        "crew": rng.integers(1, 9, n),
        "d_check_complete": (rng.random(n) < 0.7).astype(int),
        "moon_clearance_complete": (rng.random(n) < 0.4).astype(int),
    }
    shuttles = pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "shuttle_location": rng.choice(LOCATIONS, n),
            "shuttle_type": rng.choice(SHUTTLE_TYPES, n),
            "engine_type": rng.choice(ENGINE_TYPES, n),
            "engine_vendor": rng.choice(ENGINE_VENDORS, n),
            "engines": features["engines"],
            "passenger_capacity": features["passenger_capacity"],
            "cancellation_policy": rng.choice(CANCELLATION_POLICIES, n),
            "crew": features["crew"].astype(float),
            "d_check_complete": np.where(features["d_check_complete"] == 1, "t", "f"),
            "moon_clearance_complete": np.where(features["moon_clearance_complete"] == 1, "t", "f"),
            "company_id": rng.integers(1, n_companies + 1, n),
        }
    )
    return shuttles, features


def _reviews(rng: np.random.Generator, shuttle_ids: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    n = len(shuttle_ids)
    rating = rng.integers(60, 101, n).astype(float)
    scores = {f"review_scores_{aspect}": rng.integers(5, 11, n).astype(float) for aspect in ("comfort", "amenities", "trip", "crew", "location", "price")}
    reviews = pd.DataFrame(
        {
            "shuttle_id": shuttle_ids,
            "review_scores_rating": rating,
            **scores,
            "number_of_reviews": rng.integers(0, 200, n),
            "reviews_per_month": rng.gamma(2.0, 0.5, n).round(2),
        }
    )
    # A few shuttles have no review yet: the model input table drops them.
    reviews.loc[rng.random(n) < 0.03, "review_scores_rating"] = np.nan
    return reviews, np.nan_to_num(rating, nan=80.0)
