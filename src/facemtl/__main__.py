"""`python -m facemtl` runs the command-line interface."""
import sys

from .cli.__main__ import main

sys.exit(main())
