"""Model input table -> train/test split -> regressor -> evaluation metrics."""

from spaceflights.pipelines.data_science.pipeline import create_pipeline

__all__ = ["create_pipeline"]
