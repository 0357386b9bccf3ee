"""python -m genai_workstation.drift"""

from .cli import main

raise SystemExit(main())
