"""Real anatomy for the artery-groups network: patches of the labelled real scan in
``../shared/data/ts_abdomen_ct`` (never committed), used beside the phantoms.

Imported by ``train_models.py`` (``artery-groups-real``).  The scan is non-contrast and
only its aorta (1) and iliac arteries (2) are labelled, so

- each patch is drawn either as scanned (no contrast) or with a simulated contrast
  bolus: the labelled arteries are filled with a random lumen intensity (150-650 HU)
  with a partial-volume edge, calcium (> 300 HU) kept;
- the loss is *marginal* for the unlabelled classes: a voxel labelled background may
  be background, mesenteric or renal (their probabilities are summed), so the network
  is never taught that the real mesenteric and renal arteries are background;
- ``ts_dicom_series`` (aorta labelled, another scan) stays out of training: it is the
  held-out real check.
"""

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from CalciumScoringLib.segmentation.engine import _resample, normalise
from recipes import pad_to, window_around
from scipy import ndimage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN_SCAN = DATA / "ts_abdomen_ct"
LABELLED = (1, 2)  # aorta, iliac; 3 mesenteric and 4 renal are not labelled in the scan


def available():
    return (TRAIN_SCAN / "ct.nii.gz").is_file() and (TRAIN_SCAN / "groups.nii.gz").is_file()


def load_scan(spacing):
    """(HU array, label array, body mask) of the real training scan on the model grid."""
    ct = sitk.ReadImage(str(TRAIN_SCAN / "ct.nii.gz"), sitk.sitkFloat32)
    lab = sitk.ReadImage(str(TRAIN_SCAN / "groups.nii.gz"))
    work = _resample(ct, spacing, sitk.sitkLinear, -1024.0)
    lab = sitk.Resample(lab, work, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    hu = sitk.GetArrayFromImage(work)
    return hu, sitk.GetArrayFromImage(lab).astype(np.int64), hu > -500


def with_contrast(hu, lab, lumen_hu, spacing_mm, rng):
    """The scan with a simulated bolus of ``lumen_hu`` in its labelled arteries (a new
    array): partial-volume edge, 15 HU noise in the lumen, calcium (> 300 HU) kept."""
    vessel = ndimage.gaussian_filter((lab > 0).astype(np.float32), 0.6 / min(spacing_mm) + 0.3)
    out = hu + vessel * (lumen_hu + rng.normal(0, 15, hu.shape).astype(np.float32) - hu)
    calcium = hu > 300
    out[calcium] = np.maximum(out[calcium], hu[calcium])
    return out


def real_patch(scan, patch, norm, rng, spacing_mm, fg_prob=0.6):
    """One (image, label) patch of the real scan with contrast/intensity augmentation."""
    hu, lab, body = scan
    img = (with_contrast(hu, lab, float(rng.uniform(150, 650)), spacing_mm, rng)
           if rng.random() < 0.7 else hu.copy())
    img = img * float(rng.uniform(0.95, 1.05)) + float(rng.uniform(-20, 20))
    img += rng.normal(0, rng.uniform(0, 20), img.shape).astype(np.float32)
    img, y, body = pad_to(patch, (img, lab, body), (-1024.0, 0, False))
    # centred on an artery (60 %) or anywhere in the body: the hip implant, bowel, bone
    idx = np.argwhere(y > 0) if rng.random() < fg_prob else np.argwhere(body)
    sl = window_around(idx[rng.integers(len(idx))], patch, img.shape, rng)
    return normalise(img[sl], norm), y[sl]


def marginal_loss(logits, y):
    """Cross-entropy + soft Dice where only ``LABELLED`` classes are known; a background
    voxel counts as right when it is background, mesenteric or renal."""
    lp = logits.log_softmax(1)
    unknown = [c for c in range(logits.shape[1]) if c not in LABELLED]
    bg = torch.logsumexp(lp[:, unknown], 1)
    known = lp.gather(1, y.clamp(min=0)[:, None])[:, 0]
    nll = -torch.where(y == 0, bg, known).mean()
    prob = lp.exp()
    dice = []
    for c in LABELLED:
        t = (y == c).float()
        inter = (prob[:, c] * t).sum()
        dice.append((2 * inter + 1e-5) / (prob[:, c].sum() + t.sum() + 1e-5))
    return nll + 1 - torch.stack(dice).mean()


def combined_loss(net, loss_fn, ncls, x, y, real_xy, weights=None):
    """Loss of one batch: phantom patches ``x`` (N, 1, z, y, x) with labels ``y`` plus one
    real patch (image, label arrays) in the same forward pass."""
    rx, ry = (torch.from_numpy(np.ascontiguousarray(a)) for a in real_xy)
    logits = net(torch.cat([x, rx[None, None]]))
    n = len(x)
    return loss_fn(logits[:n], y, ncls, weights) + marginal_loss(logits[n:], ry[None])

