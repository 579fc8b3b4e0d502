"""Inference engine: geometry, checksum, cancellation, determinism, registry."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from CalciumScoringLib.segmentation import models
from CalciumScoringLib.errors import Cancelled
from CalciumScoringLib.segmentation.engine import segment
from CalciumScoringLib.segmentation.networks import UNet3D, Voxelwise
from CalciumScoringLib.phantoms.generator import make_phantom


def card(name, arch, patch=(32, 32, 32), spacing=(1.0, 1.0, 1.0)):
    return {"name": name, "version": "0.0.1", "labels": {"1": "bright"}, "spacing_mm": list(spacing),
            "normalization": {"type": "ct", "clip": [-1024, 3071], "mean": 0.0, "std": 100.0},
            "patch_size": list(patch), "architecture": arch, "license": "Apache-2.0",
            "intended_use": "tests only", "training": {}, "metrics": {}}


@pytest.fixture
def threshold_model(tmp_path):
    """A voxel-wise model whose label 1 is exactly HU > 250."""
    net = Voxelwise(1, 2)
    with torch.no_grad():
        net.conv.weight.zero_()
        net.conv.bias.zero_()
        net.conv.weight[1, 0] = 10.0
        net.conv.bias[1] = -25.0
    return models.save_model(tmp_path / "thr", net.state_dict(),
                             card("threshold-250", {"name": "voxelwise", "params": {}}))


def test_exact_on_the_model_grid_and_aligned_on_oblique_anisotropic_input(threshold_model):
    ph = make_phantom(40, spacing=(1.0, 1.0, 1.0), fov="vessels", lumen_hu=450.0, noise_hu=5.0)
    stages = []
    lab = segment(ph.ct, threshold_model, progress=lambda f, s: stages.append((f, s)))
    ct = sitk.GetArrayFromImage(ph.ct)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lab), (ct > 250).astype(np.uint8))
    assert stages[-1] == (1.0, "done") and any(s == "network" for _, s in stages)
    a = np.deg2rad(25)
    D = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    obl = make_phantom(40, spacing=(0.8, 0.8, 2.5), direction=D, fov="vessels", lumen_hu=450.0,
                       noise_hu=5.0)
    lab = segment(obl.ct, threshold_model)
    assert lab.GetDirection() == obl.ct.GetDirection() and lab.GetSize() == obl.ct.GetSize()
    from scipy import ndimage

    near = ndimage.binary_dilation(sitk.GetArrayFromImage(obl.groups) > 0, iterations=2)
    seg = (sitk.GetArrayFromImage(lab) > 0) & near
    lumen = sitk.GetArrayFromImage(obl.lumen) > 0
    dice = 2 * (seg & lumen).sum() / (seg.sum() + lumen.sum())
    assert dice > 0.85  # a flipped or shifted geometry would give ~0


def test_checksum_mismatch_is_refused(threshold_model, phantom_cache):
    w = threshold_model / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    ph = phantom_cache(41, (2.0, 2.0, 2.0), fov="vessels")
    with pytest.raises(models.ModelError, match="do not match the model card"):
        segment(ph.ct, threshold_model)


def test_saved_weights_are_as_readable_as_the_card(tmp_path):
    """safetensors writes 0600; a model saved for a lab folder must be readable like its
    model.json (the mode the umask gives any new file)."""
    folder = models.save_model(tmp_path / "m", UNet3D(1, 2, (4, 8)).state_dict(),
                               card("tiny-unet", {"name": "unet3d", "params": {"features": [4, 8]}}))
    mode = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert mode["weights.safetensors"] == mode["model.json"], mode
    models.verify_weights(folder, models.read_card(folder))


def test_cancel_between_windows(tmp_path, phantom_cache):
    torch.manual_seed(0)
    folder = models.save_model(tmp_path / "u", UNet3D(1, 2, (4, 8)).state_dict(),
                               card("tiny-unet", {"name": "unet3d", "params": {"features": [4, 8]}},
                                    patch=(16, 16, 16), spacing=(2.0, 2.0, 2.0)))
    ph = phantom_cache(41, (2.0, 2.0, 2.0), fov="vessels")
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        segment(ph.ct, folder, cancel=cancel)
    assert len(calls) == 4
    a = segment(ph.ct, folder, threads=1)
    b = segment(ph.ct, folder, threads=1)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))


def test_registry_lists_user_models(threshold_model, monkeypatch, tmp_path):
    monkeypatch.setenv("VASCULAR_CALCIUM_MODELS", str(threshold_model.parent))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{not json")
    names = {m.name: m for m in models.list_models()}
    assert "threshold-250" in names
    assert names["threshold-250"].labels == {"1": "bright"}
    assert names["threshold-250"].kind == "user"
    assert models.find_model("threshold-250").folder == threshold_model
    with pytest.raises(models.ModelError, match="no model named"):
        models.find_model("nope")
    with pytest.raises(models.ModelError, match="not valid JSON"):
        models.read_card(tmp_path / "broken")
    card = json.loads((threshold_model / "model.json").read_text())
    (tmp_path / "typo").mkdir()
    (tmp_path / "typo" / "model.json").write_text(json.dumps(dict(card, label_resampling="cubic")))
    with pytest.raises(models.ModelError, match="label_resampling 'cubic' is not one of linear"):
        models.read_card(tmp_path / "typo")  # refused when read, not after the network ran
    rule = {"label": 2, "reference": 1, "margin_hu": 50}  # label 2 is not in this card
    (tmp_path / "typo" / "model.json").write_text(
        json.dumps(dict(card, postprocessing={"brighter_than": rule})))
    with pytest.raises(models.ModelError, match="brighter_than must be"):
        models.read_card(tmp_path / "typo")
    (tmp_path / "typo" / "model.json").write_text(json.dumps(dict(
        card, labels={"1": "a", "2": "b"}, postprocessing={"brighter_than": dict(rule, label="2")})))
    with pytest.raises(models.ModelError, match="integer labels"):  # "2" would match nothing
        models.read_card(tmp_path / "typo")
    rule["label"] = 1
    (tmp_path / "typo" / "model.json").write_text(
        json.dumps(dict(card, labels={"1": "a", "2": "b"}, postprocessing={"brighter_than": rule})))
    assert models.read_card(tmp_path / "typo")["postprocessing"]["brighter_than"] == rule


def test_nnunet_folder_without_nnunetv2_gives_install_hint(tmp_path, phantom_cache):
    pytest.importorskip("torch")
    try:
        import nnunetv2  # noqa: F401
        pytest.skip("nnunetv2 is installed: the end-to-end nnU-Net test covers this path")
    except ImportError:
        pass
    f = tmp_path / "Dataset001_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (f / "fold_0").mkdir(parents=True)
    (f / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "artery": 1,
                                                           "calcification": 2}, "name": "X"}))
    (f / "plans.json").write_text("{}")
    (f / "fold_0" / "checkpoint_final.pth").write_bytes(b"0")
    info = models.find_model(f)
    assert info.kind == "nnunet" and info.labels == {"1": "artery", "2": "calcification"}
    ph = phantom_cache(41, (2.0, 2.0, 2.0), fov="vessels")
    with pytest.raises(models.ModelError, match="pip install"):
        segment(ph.ct, f)


def test_roi_restricts_the_work_to_the_cascade_region(threshold_model, phantom_cache):
    ph = phantom_cache(2, (1.5, 1.5, 1.5), fov="vessels")
    windows = []
    full = segment(ph.ct, threshold_model, progress=lambda f, s: windows.append(s))
    n_full = windows.count("network")
    windows.clear()
    roi = ph.groups == 4  # only around the renal arteries
    part = segment(ph.ct, threshold_model, roi=roi, roi_margin_mm=5.0,
                   progress=lambda f, s: windows.append(s))
    assert windows.count("network") < n_full
    a, b = sitk.GetArrayFromImage(full), sitk.GetArrayFromImage(part)
    near = np.zeros(a.shape, bool)
    from CalciumScoringLib.imagecheck import crop_box

    near[crop_box(sitk.GetArrayFromImage(roi) > 0, pad=3)] = True
    np.testing.assert_array_equal(b[near], a[near])  # identical inside the region
    assert b[~near].sum() < a[~near].sum()  # nothing computed far from it


def test_device_choice():
    from CalciumScoringLib.segmentation.engine import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(models.ModelError, match="not available"):
            resolve_device("cuda")
    with pytest.raises(models.ModelError, match="unknown device"):
        resolve_device("tpu")


def test_labels_follow_the_class_probabilities_between_model_voxels():
    """Probabilities resampled linearly, argmax on the fine grid: a 9 mm sphere predicted on
    a 2 mm oblique grid comes back on a 0.5 mm grid with its boundary within 0.25 mm."""
    from CalciumScoringLib.segmentation.engine import labels_on_grid

    d = sitk.VersorTransform((0.2, 0.5, 0.3), 0.4).GetMatrix()
    work = sitk.Image([30, 30, 30], sitk.sitkUInt8)
    work.SetSpacing((2.0, 2.0, 2.0))
    work.SetDirection(d)
    work.SetOrigin((-10.0, 5.0, 3.0))
    centre = np.array(work.TransformContinuousIndexToPhysicalPoint((14.3, 15.1, 14.7)))
    box = (slice(4, 26), slice(3, 27), slice(5, 25))  # the part the network ran on
    zz, yy, xx = np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij")
    pts = np.stack([xx, yy, zz], -1).reshape(-1, 3) * 2.0
    phys = pts @ np.array(d).reshape(3, 3).T + np.array(work.GetOrigin())
    r = np.linalg.norm(phys - centre, axis=1).reshape(zz.shape)
    logits = np.stack([np.zeros_like(r), 9.0 - r]).astype(np.float32)  # class 1 inside 9 mm

    ct = sitk.Image([90, 90, 90], sitk.sitkInt16)
    ct.SetSpacing((0.5, 0.5, 0.5))
    ct.SetOrigin(tuple(centre - 22.0))
    lab = sitk.GetArrayFromImage(labels_on_grid(logits, box, work, ct))
    assert lab.shape == (90, 90, 90) and set(np.unique(lab)) == {0, 1}
    zi, yi, xi = np.indices(lab.shape)
    rr = np.linalg.norm(np.stack([xi, yi, zi], -1) * 0.5 + (centre - 22.0) - centre, axis=-1)
    inside, outside = rr[lab == 1], rr[lab == 0]
    assert inside.max() < 9.25 and outside.min() > 8.75
    assert abs((lab == 1).sum() * 0.125 / (4 / 3 * np.pi * 9.0 ** 3) - 1) < 0.03


@pytest.mark.parametrize("interpolation, low, high", [("linear", -0.25, -0.05), ("bspline", -0.05, 0.05)])
def test_small_structures_keep_their_volume_with_bspline_label_resampling(interpolation, low, high):
    """Calcified plaques are a few model voxels.  Sharp class-1 logits of 2.5 mm spheres on
    a 1 mm grid, taken to a 0.75 x 0.75 x 0.8 mm grid: linear interpolation cuts their
    corners (volume 5-25 % low), cubic B-splines keep it within 5 %."""
    from CalciumScoringLib.segmentation.engine import labels_on_grid

    work = sitk.Image([40, 40, 40], sitk.sitkUInt8)
    work.SetOrigin((3.0, -2.0, 7.0))
    box = (slice(5, 35), slice(5, 35), slice(5, 35))
    zz, yy, xx = np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij")
    pts = np.stack([xx, yy, zz], -1) + np.array(work.GetOrigin())
    centres = [(12.3, 11.6, 17.2), (27.1, 25.4, 24.9), (13.8, 26.2, 32.6)]
    inside = np.zeros(zz.shape, bool)
    for c in centres:
        inside |= np.linalg.norm(pts - np.array(c), axis=-1) <= 2.5
    true_mm3 = inside.sum()  # the model-grid volume the labels should keep
    logits = np.stack([np.zeros(zz.shape), np.where(inside, 8.0, -8.0)]).astype(np.float32)

    ct = sitk.Image([60, 60, 56], sitk.sitkInt16)
    ct.SetSpacing((0.75, 0.75, 0.8))
    ct.SetOrigin((8.0, 3.0, 12.0))
    lab = sitk.GetArrayFromImage(labels_on_grid(logits, box, work, ct, interpolation))
    vol = (lab == 1).sum() * 0.75 * 0.75 * 0.8
    assert low < vol / true_mm3 - 1 < high
    from scipy import ndimage

    assert ndimage.label(lab == 1, np.ones((3, 3, 3)))[1] == 3  # each blob survives


def test_unknown_label_resampling_is_refused():
    from CalciumScoringLib.segmentation.engine import labels_on_grid

    work = sitk.Image([4, 4, 4], sitk.sitkUInt8)
    with pytest.raises(ValueError, match="bspline"):
        labels_on_grid(np.zeros((2, 4, 4, 4), np.float32), (slice(0, 4),) * 3, work, work, "cubic")


def test_calcium_not_brighter_than_the_lumen_is_given_to_the_lumen():
    """Card rule ``brighter_than``: a calcification component whose peak is not 50 HU above
    the lumen core's median is lumen; denser ones and everything else stay as they were."""
    from CalciumScoringLib.segmentation.engine import relabel_not_brighter

    hu = np.full((30, 30, 40), -100, np.int16)
    lab = np.zeros(hu.shape, np.uint8)
    lab[8:22, 8:22, :] = 1  # a square "artery" with a 400 HU lumen
    hu[8:22, 8:22, :] = 400
    lab[8:11, 8:11, 5:8] = 2  # dense plaque: stays
    hu[8:11, 8:11, 5:8] = 900
    lab[8:11, 8:11, 20:23] = 2  # as bright as the lumen (+40 HU): becomes lumen
    hu[8:11, 8:11, 20:23] = 440
    lab[19:22, 19:22, 30:33] = 2  # +60 HU: stays
    hu[19:22, 19:22, 30:33] = 460
    ct, labels = sitk.GetImageFromArray(hu), sitk.GetImageFromArray(lab)
    ct.SetSpacing((0.7, 0.7, 1.5))
    labels.CopyInformation(ct)
    out = relabel_not_brighter(labels, ct, label=2, reference=1, margin_hu=50)
    got = sitk.GetArrayFromImage(out)
    assert out.GetSpacing() == ct.GetSpacing()
    assert (got[8:11, 8:11, 20:23] == 1).all()
    assert (got == 2).sum() == 2 * 27
    assert ((got != lab) == ((lab == 2) & (hu == 440))).all()
    assert (sitk.GetArrayFromImage(labels) == lab).all()  # the input is not modified
    # no lumen core (the artery is thinner than the erosion): unchanged
    thin = lab.copy()
    thin[lab == 1] = 0
    thin[14, 14, :] = 1
    same = relabel_not_brighter(sitk.GetImageFromArray(thin), ct, 2, 1, 50)
    assert (sitk.GetArrayFromImage(same) == thin).all()
