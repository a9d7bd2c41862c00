"""Project hook of the sample project: generate the raw data on the first run."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from spaceflights.pipelines.data_generation.nodes import generate_raw_data

logger = logging.getLogger(__name__)

RAW_DATASETS = ("companies", "shuttles", "reviews")


class GenerateMissingRawData:
    """Before a run that reads the raw tables, generate them if any is missing.

    To regenerate at another size, run the ``data_generation`` pipeline:
    ``kedro run --pipeline data_generation --params data_generation.n_shuttles=1000000``.
    """

    @hook_impl
    def before_pipeline_run(self, pipeline: Pipeline, catalog: Any) -> None:
        needed = [name for name in RAW_DATASETS if name in pipeline.inputs()]
        if not needed or all(catalog.exists(name) for name in needed):
            return
        options = catalog.load("params:data_generation")
        logger.info(
            "Raw data missing: generating %s shuttles with seed %s "
            "(the data_generation pipeline regenerates it at another size).",
            options["n_shuttles"],
            options["seed"],
        )
        for name, table in zip(RAW_DATASETS, generate_raw_data(options), strict=True):
            catalog.save(name, table)
