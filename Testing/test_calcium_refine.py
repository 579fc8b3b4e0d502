"""Calcium refinement at the CT's resolution (card ``refine_by_hu``)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from CalciumScoringLib.segmentation import models
from CalciumScoringLib.segmentation.refine import (FEATURES, band_features, lumen_level,
                                              mlp_probability, refine_label)
from CalciumScoringLib.segmentation.engine import segment
from CalciumScoringLib.segmentation.networks import Voxelwise
from CalciumScoringLib.validation.evaluate import overlap

HALF = FEATURES.index("(hu - L) / (peak - L)")


def half_max_rule(steep=20.0):
    """A perceptron that calls a voxel calcium above half way from the lumen to the peak."""
    nf = len(FEATURES)
    w0 = np.zeros((2, nf), np.float32)
    w0[0, HALF], w0[1, HALF] = 1.0, -1.0
    return {"mean": np.zeros(nf, np.float32), "scale": np.ones(nf, np.float32), "w0": w0,
            "b0": np.array([-0.5, 0.5], np.float32), "w1": np.eye(2, dtype=np.float32),
            "b1": np.zeros(2, np.float32), "w2": np.array([[steep, -steep]], np.float32),
            "b2": np.zeros(1, np.float32)}


def lumen_with_plaque(spacing=0.5, radius=2.0, lumen=300.0, plaque=900.0):
    """HU of a 300 HU lumen (12 mm box in fat) holding a blurred 900 HU sphere, the true
    sphere, and the artery label."""
    n = int(round(16 / spacing))
    c = (np.indices((n, n, n)) - (n - 1) / 2) * spacing
    sphere = (c ** 2).sum(0) <= radius ** 2
    art = np.zeros((n, n, n), bool)
    art[2:-2, 2:-2, 2:-2] = True
    hu = np.where(art, lumen, -100.0)
    hu[sphere] = plaque
    hu = ndimage.gaussian_filter(hu, 0.4 / spacing) + np.random.default_rng(0).normal(0, 5, hu.shape)
    return hu.astype(np.float32), sphere, art


def test_the_perceptron_is_the_torch_network_it_was_fitted_as():
    torch.manual_seed(0)
    nf = len(FEATURES)
    net = torch.nn.Sequential(torch.nn.Linear(nf, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8),
                              torch.nn.ReLU(), torch.nn.Linear(8, 1))
    lin = [m for m in net if isinstance(m, torch.nn.Linear)]
    mean, scale = np.linspace(-1, 1, nf).astype(np.float32), np.linspace(0.5, 2, nf).astype(np.float32)
    params = {"mean": mean, "scale": scale}
    for k, m in enumerate(lin):
        params[f"w{k}"], params[f"b{k}"] = m.weight.detach().numpy(), m.bias.detach().numpy()
    X = np.random.default_rng(1).normal(size=(50, nf)).astype(np.float32)
    with torch.no_grad():
        ref = torch.sigmoid(net(torch.from_numpy((X - mean) / scale)))[:, 0].numpy()
    np.testing.assert_allclose(mlp_probability(X, params), ref, rtol=1e-5, atol=1e-6)


def test_half_max_refinement_recovers_a_plaque_the_coarse_grid_blocked_out():
    """The network's calcium on a 2 mm grid is a block; re-deciding the band around it by
    the HU at 0.5 mm recovers the sphere (what refine_by_hu is for)."""
    hu, sphere, art = lumen_with_plaque()
    coarse = ndimage.zoom(sphere[::4, ::4, ::4].astype(np.uint8), 4, order=0)[:hu.shape[0], :hu.shape[1], :hu.shape[2]] > 0
    labels = np.where(coarse, 2, np.where(art, 1, 0)).astype(np.uint8)
    p_cal = ndimage.gaussian_filter(coarse.astype(np.float32), 2.0)
    p_art = art.astype(np.float32)
    before = overlap(labels == 2, sphere)["dice"]
    lumen = lumen_level(hu, labels)
    assert lumen[0] == pytest.approx(300, abs=3)
    out = refine_label(hu, labels, p_cal, p_art, (0.5, 0.5, 0.5), half_max_rule())
    after = overlap(out == 2, sphere)["dice"]
    assert before < 0.6 and after > 0.95, (before, after)  # measured 0.52 and 0.98
    np.testing.assert_array_equal(out > 0, labels > 0)  # dropped calcium stays artery
    assert (labels == np.where(coarse, 2, np.where(art, 1, 0))).all()  # input untouched
    idx, X = band_features(hu, labels, p_cal, p_art, (0.5, 0.5, 0.5), lumen)
    assert X.shape == (idx.size, len(FEATURES)) and np.isfinite(X).all()
    # spacings outside the training phantoms' are given the nearest one the classifier saw
    assert X[0, FEATURES.index("slice spacing mm")] == 0.625
    assert X[0, FEATURES.index("in-plane spacing mm")] == pytest.approx(0.7)
    far = np.ones(hu.shape, bool)
    far.ravel()[idx] = False
    np.testing.assert_array_equal(out[far], labels[far])  # outside the band: unchanged
    # no lumen core to compare with: unchanged
    thin = np.where(labels == 2, 2, 0).astype(np.uint8)
    np.testing.assert_array_equal(refine_label(hu, thin, p_cal, p_art, (0.5,) * 3, half_max_rule()), thin)


def two_label_model(folder, refine=None, extra=None):
    """Voxel-wise model on a 2 mm grid: 1 (artery) above 150 HU, 2 (calcium) above 600."""
    net = Voxelwise(1, 3)
    with torch.no_grad():
        net.conv.weight.zero_()
        net.conv.bias.zero_()
        net.conv.weight[1, 0], net.conv.bias[1] = 10.0, -15.0
        net.conv.weight[2, 0], net.conv.bias[2] = 20.0, -75.0
    state = dict(net.state_dict(), **(extra or {}))
    card = {"name": folder.name, "version": "0.0.1", "labels": {"1": "artery", "2": "calcium"},
            "spacing_mm": [2.0, 2.0, 2.0], "patch_size": [16, 16, 16],
            "normalization": {"type": "ct", "clip": [-1024, 3071], "mean": 0.0, "std": 100.0},
            "architecture": {"name": "voxelwise", "params": {"in_channels": 1, "num_classes": 3}},
            "license": "Apache-2.0", "intended_use": "tests only", "training": {}, "metrics": {}}
    if refine:
        card["postprocessing"] = {"refine_by_hu": refine}
    return models.save_model(folder, state, card)


def test_segment_applies_the_bundled_refiner(tmp_path):
    hu, sphere, art = lumen_with_plaque(radius=2.5)
    ct = sitk.GetImageFromArray(hu)
    ct.SetSpacing((0.5, 0.5, 0.5))
    rule = {"label": 2, "reference": 1, "threshold": 0.5}
    refiner = {"refine." + k: torch.from_numpy(v) for k, v in half_max_rule().items()}
    plain = sitk.GetArrayFromImage(segment(ct, two_label_model(tmp_path / "plain")))
    refined = sitk.GetArrayFromImage(segment(ct, two_label_model(tmp_path / "ref", rule, refiner)))
    d0, d1 = overlap(plain == 2, sphere)["dice"], overlap(refined == 2, sphere)["dice"]
    assert d0 < 0.85 and d1 > 0.95, (d0, d1)  # measured 0.74 and 0.99
    np.testing.assert_array_equal(refined > 0, plain > 0)
    with pytest.raises(models.ModelError, match="weights lack"):  # card asks, weights lack it
        segment(ct, two_label_model(tmp_path / "lacking", rule))


@pytest.mark.parametrize("rule,extra,match", [
    ({"label": 3, "reference": 1}, {}, "refine_by_hu must be"),
    ({"label": 2, "reference": "1"}, {}, "integer labels"),
    ({"label": 2, "reference": 1, "threshold": 1.5}, {}, "0 < T < 1"),
    ({"label": 2, "reference": 1}, {"label_resampling": "nearest"}, "linear or bspline"),
])
def test_malformed_refine_rule_is_refused_when_the_card_is_read(tmp_path, rule, extra, match):
    folder = two_label_model(tmp_path / "m")
    card = json.loads((folder / "model.json").read_text())
    card.update(extra, postprocessing={"refine_by_hu": rule})
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(models.ModelError, match=match):
        models.read_card(folder)


def test_band_takes_in_a_bright_plaque_the_network_missed():
    """A plaque only 150 HU above the lumen, with no calcium probability at all, joins the
    band as a bright candidate, and a rule on the HU recovers it."""
    hu, sphere, art = lumen_with_plaque(radius=2.0, lumen=300.0, plaque=450.0)
    labels = art.astype(np.uint8)
    zero = np.zeros(hu.shape, np.float32)
    lumen = lumen_level(hu, labels)
    idx, X = band_features(hu, labels, zero, art.astype(np.float32), (0.5,) * 3, lumen)
    in_band = np.zeros(hu.shape, bool)
    in_band.ravel()[idx] = True
    core = ndimage.binary_erosion(sphere, iterations=2)
    assert in_band[core].all() and not in_band[~ndimage.binary_dilation(art, iterations=6)].any()
    cand = X[:, FEATURES.index("bright candidate")] > 0
    assert cand.sum() < 2 * sphere.sum()  # the lumen (5 HU noise) stays out
    out = refine_label(hu, labels, zero, art.astype(np.float32), (0.5,) * 3, half_max_rule())
    assert overlap(out == 2, sphere)["dice"] > 0.95  # measured 0.996
    depth = X[:, FEATURES.index("depth inside artery mm")]
    assert depth.max() <= 5.0 and depth.min() >= -5.0


def test_an_ensemble_averages_its_members():
    rule, flat = half_max_rule(), half_max_rule(steep=0.0)
    both = {k: (np.stack([rule[k], flat[k]]) if k not in ("mean", "scale") else rule[k])
            for k in rule}
    X = np.random.default_rng(2).normal(size=(20, len(FEATURES))).astype(np.float32)
    np.testing.assert_allclose(mlp_probability(X, both),
                               (mlp_probability(X, rule) + 0.5) / 2, rtol=1e-6)


def test_a_refiner_fitted_on_other_features_is_refused(tmp_path):
    nf = len(FEATURES) - 2
    old = {k: (v[..., :nf] if k in ("mean", "scale", "w0") else v)
           for k, v in half_max_rule().items()}
    rule = {"label": 2, "reference": 1, "threshold": 0.5}
    folder = two_label_model(tmp_path / "old", rule,
                             {"refine." + k: torch.from_numpy(np.ascontiguousarray(v))
                              for k, v in old.items()})
    hu, _, _ = lumen_with_plaque()
    ct = sitk.GetImageFromArray(hu)
    ct.SetSpacing((0.5, 0.5, 0.5))
    with pytest.raises(models.ModelError, match=f"takes {nf} features.*refit it"):
        segment(ct, folder)
