"""Package worker is the entry point of one ``policyd serve --workers N`` process.

The supervisor (``policyd.cli.serve``) starts ``python -m policyd.cli.worker``
with the parsed ``ServeSettings`` as JSON in ``POLICYD_WORKER_SETTINGS``.
"""

from __future__ import annotations

import sys

from policyd.cli import guarded
from policyd.cli.serve import run_worker

if __name__ == "__main__":
    sys.exit(guarded(run_worker))
