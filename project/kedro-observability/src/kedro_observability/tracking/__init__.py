"""MLflow tracking: one MLflow run per ``kedro run``, whatever the runner.

:mod:`.run` opens the run and uploads what it gathered at the end, :mod:`.server` talks to
the tracking server or store, :mod:`.content` turns Kedro data into MLflow's entities, and
:mod:`.params` makes Kedro parameters and names into keys MLflow accepts.
"""

from kedro_observability.tracking.server import MlflowTrackingError

__all__ = ["MlflowTrackingError"]
