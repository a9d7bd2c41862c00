"""``python -m kedro_observability.metrics mapping|table``: the stack's generated files."""

import sys

from kedro_observability.metrics.declarations import main

raise SystemExit(main(sys.argv[1:]))
