"""Where the CalciumScoring module's run-time resources are: colour/terminology table and
bundled models (shared by the segmentation registry and the scene's segment terms)."""

import os
from pathlib import Path


def resources_dir():
    """The CalciumScoring module's ``Resources`` folder (override: ``VASCULAR_CALCIUM_RESOURCES``).

    In Slicer and in a source checkout it sits beside ``CalciumScoringLib``; a pip-installed
    wheel carries a copy inside the package (``CalciumScoringLib/Resources``).
    """
    env = os.environ.get("VASCULAR_CALCIUM_RESOURCES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    beside = here.parent / "Resources"
    return beside if (beside / "ColorTables").is_dir() else here / "Resources"
