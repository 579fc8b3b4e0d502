"""Shared pytest fixtures: real MRML scenes, phantoms and the shared data folder."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VASCULAR_CALCIUM_SHARED_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def mrml():
    """A real vtkMRMLScene with Slicer's module logics (see slicer_shim.py)."""
    from slicer_shim import Harness

    h = Harness()
    yield h
    h.close()


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not present (set VASCULAR_CALCIUM_SHARED_DATA)")
    return SHARED_DATA


_PHANTOMS = {}


@pytest.fixture(scope="session")
def phantom_cache():
    """Memoised phantoms: ``phantom_cache(seed, spacing, **options)``; do not modify the result."""
    from CalciumScoringLib.phantoms.generator import make_phantom

    def get(seed, spacing=(1.0, 1.0, 1.0), direction=None, **options):
        key = (seed, tuple(spacing), None if direction is None else tuple(np.ravel(direction)),
               repr(sorted(options.items())))
        if key not in _PHANTOMS:
            _PHANTOMS[key] = make_phantom(seed, spacing=spacing, direction=direction, **options)
        return _PHANTOMS[key]

    return get


def write_phantom_cases(folder, seeds, spacing):
    """Phantom CTs ``case<i>.nii.gz`` and their groups ``case<i>_groups.nrrd`` in ``folder``;
    returns the case-list rows (case_id, ct, groups; paths relative to ``folder``)."""
    import SimpleITK as sitk

    from CalciumScoringLib.phantoms.generator import make_phantom

    rows = []
    for i, seed in enumerate(seeds):
        ph = make_phantom(seed, spacing=spacing, fov="vessels")
        sitk.WriteImage(ph.ct, str(Path(folder) / f"case{i}.nii.gz"))
        sitk.WriteImage(ph.groups, str(Path(folder) / f"case{i}_groups.nrrd"))
        rows.append({"case_id": f"case{i}", "ct": f"case{i}.nii.gz", "groups": f"case{i}_groups.nrrd"})
    return rows
