"""Import the study scripts (examples/study/qN_*.py) as modules."""

import importlib
import sys
from pathlib import Path

STUDY = Path(__file__).resolve().parents[2] / "examples" / "study"


def load(name: str):
    if str(STUDY) not in sys.path:
        sys.path.insert(0, str(STUDY))
    return importlib.import_module(name)
