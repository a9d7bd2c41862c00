"""Generation of the raw companies, shuttles and reviews tables."""

from spaceflights.pipelines.data_generation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
