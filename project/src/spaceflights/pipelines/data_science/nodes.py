"""Training and evaluation of the shuttle price regressor."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from sklearn.linear_model import LinearRegression
from sklearn.metrics import max_error, mean_absolute_error, r2_score
from sklearn.model_selection import train_test_split

logger = logging.getLogger(__name__)


def split_data(data: pd.DataFrame, options: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Split the features and the price into training and test sets."""
    features = data[list(options["features"])].astype(float)
    target = data["price"]
    X_train, X_test, y_train, y_test = train_test_split(
        features, target, test_size=options["test_size"], random_state=options["random_state"]
    )
    return X_train, X_test, y_train, y_test


def train_model(X_train: pd.DataFrame, y_train: pd.Series) -> LinearRegression:
    """Fit a linear regressor; deterministic, so every runner gives the same model."""
    return LinearRegression().fit(X_train, y_train)


def evaluate_model(regressor: LinearRegression, X_test: pd.DataFrame, y_test: pd.Series) -> dict[str, float]:
    """r2, mean absolute error and max error of the regressor on the test set."""
    predicted = regressor.predict(X_test)
    metrics = {
        "r2": float(r2_score(y_test, predicted)),
        "mae": float(mean_absolute_error(y_test, predicted)),
        "max_error": float(max_error(y_test, predicted)),
    }
    logger.info("Model has r2 %.3f, MAE %.1f, max error %.1f on the test data.", metrics["r2"], metrics["mae"], metrics["max_error"])
    return metrics
