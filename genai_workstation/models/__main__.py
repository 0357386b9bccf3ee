"""`python -m genai_workstation.models`: the genai-models CLI."""

import sys

from .cli import main

sys.exit(main())
