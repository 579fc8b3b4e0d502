"""The refine_by_hu threshold's calibration (training/calibrate_refiner.py): it must measure
what segment() would label at each threshold, and choose by its stated rule."""

import sys

import numpy as np
import pytest
from conftest import ROOT
from test_calcium_refine import half_max_rule, lumen_with_plaque

from CalciumScoringLib.segmentation.refine import (band_features, lumen_level, mlp_probability,
                                                   refine_label)

sys.path.insert(0, str(ROOT / "training"))
cr = pytest.importorskip("calibrate_refiner")


def sloppy_case():
    """A plaque whose core alone the 'network' labelled, as a cached calibration case."""
    from scipy import ndimage

    hu, sphere, art = lumen_with_plaque(radius=2.5)
    labels = art.astype(np.uint8)
    labels[ndimage.binary_erosion(sphere, iterations=3)] = 2
    p_lab, p_ref = np.zeros(hu.shape, np.float32), art.astype(np.float32)
    idx, X = band_features(hu, labels, p_lab, p_ref, (0.5,) * 3, lumen_level(hu, labels))
    case = {"before": labels, "box": np.array([[0, n] for n in hu.shape]), "idx": idx, "X": X,
            "truth": sphere, "near": np.zeros(hu.shape, bool),
            "groups": art.astype(np.uint8) * 3, "vv": 0.125}
    return case, (hu, labels, p_lab, p_ref)


def test_relabel_is_what_the_refiner_labels_at_each_threshold():
    case, (hu, labels, p_lab, p_ref) = sloppy_case()
    params = half_max_rule(steep=3.0)  # soft: the threshold moves the edge
    p = mlp_probability(case["X"], params)
    sizes = []
    for t in (0.2, 0.5, 0.8):
        ref = refine_label(hu, labels, p_lab, p_ref, (0.5,) * 3, params, threshold=t) == 2
        got = cr.relabel(case, p, t)
        np.testing.assert_array_equal(got, ref)
        sizes.append(int(got.sum()))
    assert sizes[0] > sizes[1] > sizes[2], sizes
    vols, dice = cr.measure(case, cr.relabel(case, p, 0.5))
    assert vols[1] == vols[2] == vols[4] == (0.0, 0.0)
    assert vols[3][1] == pytest.approx(case["truth"].sum() * 0.125)
    assert vols[3][0] == pytest.approx(sizes[1] * 0.125) and 0.9 < dice <= 1.0


def rows(errors, dice):
    """One case per group error: {seed: ({group: (predicted, true)}, dice)}."""
    vols = {g: (100.0 * (1 + e), 100.0) for g, e in zip((1, 2, 3, 4), errors)}
    return {0: (vols, dice)}


def test_choose_takes_the_least_volume_error_within_the_dice_tolerance():
    result = {0.4: rows([0.05, -0.01, 0.0, 0.02], 0.915),
              0.5: rows([0.01, -0.053, 0.0, 0.0], 0.92),
              0.6: rows([0.01, 0.01, 0.0, 0.0], 0.80)}  # too low a Dice to count
    best, dice, worst = cr.choose(result)
    assert best == 0.5 and worst[0.4] == pytest.approx(0.05)  # a tie: the higher Dice
    result[0.5] = rows([0.01, -0.06, 0.0, 0.0], 0.92)
    assert cr.choose(result)[0] == 0.4
    result[0.6] = rows([0.01, 0.01, 0.0, 0.0], 0.915)
    assert cr.choose(result)[0] == 0.6
    result[0.4] = rows([0.0, 0.0, 0.0, 0.0], 0.905)  # exact, but 0.015 below the best Dice
    assert cr.choose(result)[0] == 0.6


def test_bootstrap_counts_sets_beyond_ten_percent():
    renal_high = {s: ({1: (10.0, 10.0), 2: (0.0, 0.0), 3: (5.0, 5.0), 4: (12.0, 10.0)}, 1.0)
             for s in range(5)}
    share = cr.bootstrap(renal_high, draws=200)
    assert share == {"aorta": 0.0, "iliac": 0.0, "mesenteric": 0.0, "renal": 1.0}
    half = dict(renal_high)
    half[0] = ({1: (10.0, 10.0), 2: (0.0, 0.0), 3: (5.0, 5.0), 4: (10.0, 10.0)}, 1.0)
    half.update({s: ({1: (10.0, 10.0), 2: (0.0, 0.0), 3: (5.0, 5.0), 4: (0.0, 0.0)}, 1.0)
                 for s in range(1, 5)})
    # renal calcium in one case of five, exact there: no set can be off
    assert cr.bootstrap(half, draws=200)["renal"] == 0.0
