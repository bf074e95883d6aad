"""`python -m cprs_engine`: the engine's commands without the proxy (see cprs_engine/cli.py)."""

import sys

from cprs_engine.cli import main

sys.exit(main())
