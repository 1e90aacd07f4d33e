"""`python -m rnngraph ...` runs the `rnngraph` command (see rnngraph/cli.py)."""
import sys

from .cli import main

sys.exit(main())
