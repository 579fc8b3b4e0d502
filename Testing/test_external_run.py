"""The Slicer module's Apply path: the pipeline as our command line in a separate process,
polled (no thread), its progress read, its outputs loaded into a real MRML scene; Cancel
kills it and leaves the scene as it was."""

import sys
import time

import numpy as np
import pytest

from CalciumScoringLib.scene.external import ExternalRun
from CalciumScoringLib.scene.pipeline import CalciumScoringPipeline

pytestmark = pytest.mark.mrml


def wait(run, limit=600):
    seen = []
    t = time.time()
    while run.poll() == "running" and time.time() - t < limit:
        if not seen or seen[-1] != run.progress:
            seen.append(run.progress)
        time.sleep(0.2)
    seen.append(run.progress)
    return seen


def test_external_run_loads_the_same_scores_as_in_process(mrml, tmp_path):
    pipe = CalciumScoringPipeline()
    volume, groups = pipe.load_phantom(mrml.scene, seed=4, spacing=(1.5, 1.5, 2.0), fov="vessels")
    run = ExternalRun.start(volume, groups, "lumen_relative", {"stump_length_mm": 25.0},
                            python=sys.executable, folder=tmp_path / "work")
    seen = wait(run)
    assert run.state == "finished", run.error()
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 3
    assert any("scoring" in s for _, s in seen)
    before = mrml.scene.GetNumberOfNodes()
    result = run.load(volume, pipe)
    assert mrml.scene.GetNumberOfNodes() > before
    assert not (tmp_path / "work").exists()  # the work folder goes once loaded
    inside = pipe.process(volume, groups)
    a = result.dataframe.set_index("region")
    b = inside.dataframe.set_index("region")
    for col in ("artery_volume_mm3", "calcium_volume_mm3", "burden", "cluster_count"):
        assert np.allclose(a[col].astype(float), b[col].astype(float), equal_nan=True), col
    assert list(a.state) == list(b.state) and result.scores_valid == inside.scores_valid
    assert result.shortened.GetSegmentation().GetNumberOfSegments() == 4
    assert result.calcifications is not None
    assert "external process" in result.table.GetAttribute("VascularCalcium.Provenance")


def test_cancel_kills_the_process_and_leaves_the_scene(mrml, tmp_path):
    pipe = CalciumScoringPipeline()
    volume, _ = pipe.load_phantom(mrml.scene, seed=4, spacing=(1.5, 1.5, 2.0), fov="vessels")
    nodes = mrml.scene.GetNumberOfNodes()
    run = ExternalRun.start(volume, "artery-groups", "lumen_relative", python=sys.executable,
                            folder=tmp_path / "work")
    t = time.time()
    while run.poll() == "running" and run.progress[0] < 0.05 and time.time() - t < 120:
        time.sleep(0.1)
    assert run.state == "running"
    run.cancel()
    assert run.process.poll() is not None and run.poll() == "cancelled"
    assert not (tmp_path / "work").exists()
    assert mrml.scene.GetNumberOfNodes() == nodes


def test_a_failed_run_says_why(mrml, tmp_path):
    pipe = CalciumScoringPipeline()
    volume, groups = pipe.load_phantom(mrml.scene, seed=4, spacing=(1.5, 1.5, 2.0), fov="vessels")
    run = ExternalRun.start(volume, groups, "no_such_method", python=sys.executable,
                            folder=tmp_path / "work")
    wait(run, 120)
    assert run.state == "failed"
    message, detail = run.error()
    assert "no_such_method" in message + detail
    with pytest.raises(RuntimeError):
        run.load(volume)
