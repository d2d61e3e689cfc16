"""``python -m policyd.cli``: the same as the ``policyd`` command."""

from __future__ import annotations

import sys

from policyd.cli import main

if __name__ == "__main__":
    sys.exit(main())
