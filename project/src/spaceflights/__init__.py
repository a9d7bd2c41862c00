"""The sample Kedro project of kedro-observability-stack: spaceflights on generated data."""

__version__ = "0.1.0"
