"""Inference engine: run a model on a CT and return labels on the CT's grid.

Steps (each reported to ``progress(fraction, stage)``):

1. resample the CT to the model's spacing on a grid of identity direction (LPS voxel
   order, the orientation the networks were trained in; :func:`work_grid`), so the same
   CT stored in RAS order, with permuted axes or obliquely gives the same network input;
   the labels are mapped back onto the CT's own grid in step 6;
2. normalise intensities as the model card says (``ct``: clip to a HU window, then
   subtract mean and divide by SD, as nnU-Net's CT scheme);
3. crop to the body (voxels above ``body_threshold_hu``), so air costs nothing;
4. sliding-window inference (half-patch overlap) with Gaussian blending of the
   window logits, optional mirroring, ``cancel()`` checked between windows;
5. postprocessing on the model grid where the card asks for it: the largest connected
   component of listed labels, and only the foreground connected to the aorta's
   largest component (``"tree_of": 1``), so isolated false positives go;
6. softmax, class probabilities resampled onto the input grid (each only where it is
   non-negligible; linear, or cubic B-spline where the card says
   ``"label_resampling": "bspline"``, which keeps the volume of small structures) and
   argmax there, as nnU-Net does, so boundaries are sub-voxel on a finer input grid (a
   card may ask for ``"nearest"`` label resampling instead);
7. on the input grid, where the card asks for it (``"brighter_than"``): components of a
   label (calcification) whose peak HU is not at least ``margin_hu`` above the median
   HU of a reference label's core (the contrast lumen) are given to the reference label:
   a bright spot as dense as the lumen is lumen, not calcium;
8. where the card asks for it (``"refine_by_hu"``): the voxels in a band around that
   label, and around the artery voxels clearly brighter than the lumen, re-decided at the
   input grid's resolution from their HU by the model's small classifier
   (:mod:`.refine`);
9. where the card names a branch network (``"branches"``): the mesenteric and renal
   arteries re-decided by it on its finer grid near the aorta (:mod:`.branches`).

>>> from CalciumScoringLib.segmentation.models import list_models  # doctest: +SKIP
>>> from CalciumScoringLib.segmentation.engine import segment  # doctest: +SKIP
>>> labels = segment(ct, "artery-groups", threads=2)              # doctest: +SKIP
"""

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import Cancelled
from ..imagecheck import crop_box
from .models import ModelError, find_model, verify_weights
from .lumen import grow_on_grid
from .refine import REFINER_PREFIX, load_refiner, lumen_level, refine_on_grid


IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def work_grid(image, spacing):
    """``(size, origin)`` of the model's working grid for ``image``: identity direction (LPS
    voxel order, the orientation the networks were trained in), ``spacing`` (x, y, z), over
    the physical extent of ``image``'s voxel centres.

    The grid depends only on where the voxels lie in the patient, not on the order they are
    stored in: the same CT stored in RAS voxel order, or with its axes permuted, gives the
    same working grid, hence the same network input.  For an identity-direction image the
    origin is its own and the size ``round(n * s / t)`` per axis, as before.
    """
    size, sp = np.array(image.GetSize()), np.array(image.GetSpacing(), float)
    D = np.array(image.GetDirection(), float).reshape(3, 3)
    corners = np.array([image.TransformIndexToPhysicalPoint([int(v) for v in np.multiply(c, size - 1)])
                        for c in np.ndindex(2, 2, 2)])
    lo, hi = corners.min(0), corners.max(0)
    step = np.abs(D) @ sp  # a voxel's extent along each patient axis (exact when aligned)
    t = np.array([float(v) for v in spacing])
    n = np.maximum(np.rint((hi - lo + step) / t).astype(int), 1)
    return [int(v) for v in n], [float(v) for v in lo]


def _resample(image, spacing, interpolator, default):
    spacing = [float(s) for s in spacing]
    aligned = np.allclose(image.GetDirection(), IDENTITY, atol=1e-6)
    if aligned and np.allclose(image.GetSpacing(), spacing):
        return image
    size, origin = work_grid(image, spacing)
    return sitk.Resample(image, size, sitk.Transform(), interpolator, origin, spacing,
                         IDENTITY, default, image.GetPixelID())


def normalise(arr, norm):
    """Normalised float32 intensities as the card's ``normalization`` dict specifies."""
    kind = norm.get("type", "ct")
    a = arr.astype(np.float32)
    if kind == "ct":
        lo, hi = norm.get("clip", (-1024.0, 3071.0))
        np.clip(a, lo, hi, out=a)
        a -= np.float32(norm.get("mean", 0.0))
        a /= np.float32(norm.get("std", 1.0))
        return a
    raise ModelError(f"unknown normalization type {kind!r}")


def gaussian_weights(patch, sigma_scale=0.125):
    """Importance map of a window (nnU-Net's Gaussian), never exactly zero."""
    g = np.zeros(patch, np.float32)
    g[tuple(p // 2 for p in patch)] = 1
    g = ndimage.gaussian_filter(g, [p * sigma_scale for p in patch], mode="constant")
    g /= g.max()
    g[g == 0] = g[g > 0].min()
    return g


def _starts(n, p, step):
    if n <= p:
        return [0]
    k = int(np.ceil((n - p) / (p * step))) + 1
    return sorted({int(round(v)) for v in np.linspace(0, n - p, k)})


def sliding_window(net, arr, patch, num_classes, mirror=False, progress=None, cancel=None,
                   step=0.5, batch=2):
    """Blended class logits (C, z, y, x) of a normalised array; ``patch`` is (z, y, x).

    Windows go through the network ``batch`` at a time: on 2 CPU cores two 64^3 windows
    together take about as long as one alone (the network normalises each window on its
    own, so the logits are those of one at a time, to float rounding)."""
    import torch

    pad = [max(p - n, 0) for p, n in zip(patch, arr.shape)]
    div = getattr(net, "divisor", 1)
    pad = [pp + (-(n + pp)) % div if n + pp < p else pp for pp, n, p in zip(pad, arr.shape, patch)]
    a = np.pad(arr, [(0, pp) for pp in pad], mode="edge") if any(pad) else arr
    w = gaussian_weights(patch)
    out = np.zeros((num_classes,) + a.shape, np.float32)
    norm = np.zeros(a.shape, np.float32)
    windows = [(slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
               for z in _starts(a.shape[0], patch[0], step)
               for y in _starts(a.shape[1], patch[1], step) for x in _starts(a.shape[2], patch[2], step)]
    batch = max(1, int(batch))
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            if cancel is not None and cancel():
                raise Cancelled("inference cancelled")
            chunk = windows[i:i + batch]
            t = torch.from_numpy(np.stack([a[sl] for sl in chunk]))[:, None]
            logits = net(t)
            if mirror:
                for axes in ((2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)):
                    logits = logits + torch.flip(net(torch.flip(t, axes)), axes)
                logits = logits / 8
            logits = logits.numpy()
            for sl, lg in zip(chunk, logits):
                out[(slice(None),) + sl] += lg * w
                norm[sl] += w
            if progress:
                progress(min(i + batch, len(windows)) / len(windows), "network")
    out /= norm
    return out[(slice(None),) + tuple(slice(0, n) for n in arr.shape)]


def _clean_on_model_grid(logits, box, largest=(), tree_of=None):
    """Postprocessing on the model grid (cheap), before the labels go to the input grid.

    ``largest``: labels of which only the largest 26-connected component is kept;
    ``tree_of``: a label (e.g. 1, aorta) whose largest component anchors the tree: only
    foreground components connected to it are kept (isolated false positives far from
    the arteries go).  Dropped voxels become background.  Returns the logits and the box
    cropped to the remaining foreground (two voxels of margin), or (None, None).
    """
    hard = np.argmax(logits, axis=0)
    drop = np.zeros(hard.shape, bool)
    full = np.ones((3, 3, 3), bool)
    for v in set(largest) | ({tree_of} if tree_of else set()):
        m = hard == v
        lab, n = ndimage.label(m, full)
        if n > 1:
            sizes = np.bincount(lab.ravel())[1:]
            drop |= m & (lab != 1 + int(np.argmax(sizes)))
    if tree_of:
        fg = (hard > 0) & ~drop
        lab, n = ndimage.label(fg, full)
        anchor = np.unique(lab[(hard == tree_of) & ~drop])
        drop |= fg & ~np.isin(lab, anchor[anchor > 0])
    if drop.any():
        logits = logits.copy()
        logits[0][drop] = logits.max(axis=0)[drop] + 10.0
        hard[drop] = 0
    inner = crop_box(hard > 0, pad=2)
    if inner is None:
        return logits, None
    logits = logits[(slice(None),) + inner]
    return logits, tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, inner))


def _empty_labels(ct):
    out = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
    out.CopyInformation(ct)
    return out


def _softmax(logits):
    p = logits - logits.max(axis=0, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=0, keepdims=True)
    return p


#: card ``"label_resampling"`` -> SimpleITK interpolator for the class probabilities
INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}


def _ct_range(work, box, ct):
    """Index range [lo, hi) of ``ct`` covered by ``box`` of ``work``, one voxel of margin."""
    start = [b.start for b in box][::-1]
    ends = [b.stop - 1 for b in box][::-1]
    corners = [work.TransformContinuousIndexToPhysicalPoint(
        [ends[i] + 0.5 if c[i] else start[i] - 0.5 for i in range(3)])
        for c in np.ndindex(2, 2, 2)]
    idx = np.array([ct.TransformPhysicalPointToContinuousIndex(p) for p in corners])
    lo = np.clip(np.floor(idx.min(0)).astype(int) - 1, 0, None)
    hi = np.minimum(np.ceil(idx.max(0)).astype(int) + 2, ct.GetSize())
    return lo, hi


def labels_on_grid(logits, box, work, ct, interpolation="linear", min_prob=1e-3, keep=()):
    """Argmax on ``ct``'s grid of class logits (C, z, y, x) that cover ``box`` of ``work``.

    Each foreground class probability is resampled (``interpolation``: ``"linear"`` or
    ``"bspline"``) only over the part of ``ct`` where it exceeds ``min_prob`` on the model
    grid; the background is ``1 - sum`` of the others (both interpolators reproduce
    constants, so this equals resampling it).  Linear interpolation of a small blob
    thresholded at 0.5 cuts its corners (a perfect 1 mm calcium mask loses 12 % of its
    volume on a 0.75 mm grid); cubic B-splines do not (-1 %).  With ``keep`` (class
    values) it returns ``(labels, {class: probability on ct[lo:hi]}, lo)`` (x, y, z ``lo``).
    """
    if interpolation not in INTERPOLATORS:
        raise ValueError(f"unknown label_resampling {interpolation!r}; use "
                         f"{', '.join(sorted(INTERPOLATORS))} or 'nearest'")
    interp = INTERPOLATORS[interpolation]
    margin = 1 if interpolation == "linear" else 3
    prob = _softmax(logits)
    lo, hi = _ct_range(work, box, ct)
    if np.any(hi <= lo):
        return (_empty_labels(ct), {}, lo) if keep else _empty_labels(ct)
    shape = tuple(int(v) for v in (hi - lo)[::-1])
    kept = {c: np.zeros(shape, np.float32) for c in keep}
    fg_sum = np.zeros(shape, np.float32)
    best = np.zeros(shape, np.float32)
    best_label = np.zeros(shape, np.uint8)
    for c in range(1, prob.shape[0]):
        sub = crop_box(prob[c] > min_prob, pad=margin)
        if sub is None:
            continue
        cbox = tuple(slice(b.start + s.start, b.start + s.stop) for b, s in zip(box, sub))
        clo, chi = _ct_range(work, cbox, ct)
        clo, chi = np.maximum(clo, lo), np.minimum(chi, hi)
        if np.any(chi <= clo):
            continue
        piece = sitk.GetImageFromArray(np.ascontiguousarray(prob[(c,) + sub]))
        piece.SetOrigin(work.TransformIndexToPhysicalPoint([int(b.start) for b in cbox][::-1]))
        piece.SetSpacing(work.GetSpacing())
        piece.SetDirection(work.GetDirection())
        r = sitk.GetArrayFromImage(sitk.Resample(
            piece, [int(v) for v in chi - clo], sitk.Transform(), interp,
            ct.TransformIndexToPhysicalPoint([int(v) for v in clo]), ct.GetSpacing(),
            ct.GetDirection(), 0.0, sitk.sitkFloat32))
        sl = tuple(slice(int(a - b), int(e - b)) for a, e, b in zip(clo[::-1], chi[::-1], lo[::-1]))
        fg_sum[sl] += r
        if c in kept:
            kept[c][sl] = r
        better = r > best[sl]
        best[sl][better] = r[better]
        best_label[sl][better] = c
    # a tie with the background goes to the background, as argmax does; the tolerance
    # absorbs float32 rounding of 1 - sum (ties are exact for e.g. equal logits)
    best_label[best <= 1.0 - fg_sum + 1e-5] = 0
    out = np.zeros(ct.GetSize()[::-1], np.uint8)
    out[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = best_label
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(ct)
    return (img, kept, lo) if keep else img


def relabel_not_brighter(labels, ct, label, reference, margin_hu, erode=2):
    """``labels`` (SimpleITK) with each component of ``label`` whose peak HU in ``ct`` is
    below the median HU of ``reference`` (eroded by ``erode`` voxels: its core, away from
    the wall) plus ``margin_hu`` given to ``reference``.  Unchanged when ``reference`` has
    no core.  Only the bounding box of the two labels is read.
    """
    lab = sitk.GetArrayFromImage(labels)
    box = crop_box((lab == label) | (lab == reference), pad=1)
    if box is None or not (lab[box] == label).any():
        return labels
    sub, hu = lab[box], sitk.GetArrayViewFromImage(ct)[box]
    lumen = lumen_level(hu, sub, reference, erode)
    if lumen is None:
        return labels
    floor = lumen[0] + float(margin_hu)
    full = np.ones((3, 3, 3), bool)
    comps, n = ndimage.label(sub == label, full)
    peak = np.asarray(ndimage.maximum(hu, comps, np.arange(1, n + 1)))
    dim = np.isin(comps, 1 + np.flatnonzero(peak < floor))
    if not dim.any():
        return labels
    sub[dim] = reference
    out = sitk.GetImageFromArray(lab)
    out.CopyInformation(labels)
    return out


def resolve_device(device="cpu"):
    """``"cpu"``, ``"cuda"``, ``"mps"`` or ``"auto"`` (the first available GPU, else CPU)."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    has = {"cuda": torch.cuda.is_available(), "mps": bool(mps and mps.is_available())}
    if device == "auto":
        return next((d for d in ("cuda", "mps") if has[d]), "cpu")
    if device in has and not has[device]:
        raise ModelError(f"device {device!r} requested but not available here; use device='cpu' "
                         "or 'auto'")
    if device not in ("cpu", "cuda", "mps"):
        raise ModelError(f"unknown device {device!r}; use 'cpu', 'cuda', 'mps' or 'auto'")
    return device


#: networks this process has loaded, by (folder, weights sha256, device, weights file
#: size and time): a cohort worker loads each model once, not once per case, and a weights
#: file changed on disk is loaded (and checked) again
_NETWORKS = {}


def load_network(info, device="cpu"):
    """The torch network of a model folder, after the checksum check (once per process:
    later calls return the same network; ``loaded_networks()`` lists them)."""
    from safetensors.torch import load_file

    from .networks import build

    st = (Path(info.folder) / info.card["weights"]).stat()
    key = (str(Path(info.folder).resolve()), info.card.get("sha256"), str(device),
           st.st_size, st.st_mtime_ns)
    if key not in _NETWORKS:
        weights = verify_weights(info.folder, info.card)
        net = build(info.card["architecture"])
        state = load_file(str(weights), device="cpu")
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith(REFINER_PREFIX)})
        _NETWORKS[key] = net.to(device).eval()
    return _NETWORKS[key]


def loaded_networks():
    """``[(folder, sha256, device, size, mtime)]`` of the networks this process holds."""
    return list(_NETWORKS)


def segment(ct, model, device="cpu", threads=None, progress=None, cancel=None, mirror=None,
            roi=None, roi_margin_mm=10.0):
    """Label map of ``ct`` (SimpleITK, HU) by ``model`` (registry name or folder), on ct's grid.

    ``progress(fraction, stage)`` is called as work proceeds; ``cancel()`` is checked
    between windows and raises :class:`Cancelled` when it returns True.  CPU results
    are deterministic (same input, same labels).  ``roi`` (a mask on ct's grid, e.g.
    the artery groups of the first model) restricts the work to its bounding box plus
    ``roi_margin_mm``: the cascade that keeps the fine calcium model fast.  The card's
    ``tile_step`` (fraction of the patch between windows, default 0.5) sets the overlap.
    """
    return _segment(ct, model, device, threads, progress, cancel, mirror, roi, roi_margin_mm)


def refiner_inputs(ct, model, label=2, reference=1, threads=None, roi=None, roi_margin_mm=10.0):
    """What ``refine_by_hu`` starts from on ``ct``, for fitting it (training/fit_refiner.py):
    ``(labels, {label: p, reference: p}, lo)``, the labels of :func:`segment` before the
    refinement and the two class probabilities on ``ct[lo:hi]``; ``None`` if nothing found."""
    return _segment(ct, model, "cpu", threads, None, None, None, roi, roi_margin_mm,
                    inputs_of=(label, reference))


def _segment(ct, model, device, threads, progress, cancel, mirror, roi, roi_margin_mm,
             inputs_of=None):
    import torch

    info = find_model(model)
    if info.kind == "nnunet":
        from .nnunet import segment_nnunet

        return segment_nnunet(ct, info, device=device, threads=threads, progress=progress,
                              cancel=cancel)
    if ct.GetDimension() != 3 or ct.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("the CT must be a 3D single-component image")
    if threads:
        torch.set_num_threads(int(threads))
    device = resolve_device(device)
    report = progress or (lambda f, s: None)
    card = info.card
    report(0.0, "loading model")
    net = load_network(info, device)
    report(0.02, "resampling")
    work = _resample(sitk.Cast(ct, sitk.sitkFloat32), card["spacing_mm"], sitk.sitkLinear, -1024.0)
    arr = sitk.GetArrayFromImage(work)
    body_thr = card.get("body_threshold_hu", -500.0)
    body = arr > body_thr
    if roi is not None:
        r = sitk.Resample(sitk.Cast(roi > 0, sitk.sitkUInt8), work, sitk.Transform(),
                          sitk.sitkNearestNeighbor, 0)
        pad = [int(np.ceil(roi_margin_mm / s)) for s in work.GetSpacing()[::-1]]
        rbox = crop_box(sitk.GetArrayViewFromImage(r) > 0, pad=pad)
        if rbox is None:
            report(1.0, "done")
            return None if inputs_of else _empty_labels(ct)
        keep = np.zeros(arr.shape, bool)
        keep[rbox] = True
        body &= keep
    box = crop_box(body, pad=0) or tuple(slice(0, n) for n in arr.shape)
    x = normalise(arr[box], card["normalization"])
    patch = tuple(card["patch_size"][::-1])
    ncls = len(card["labels"]) + (0 if "0" in card["labels"] else 1)
    torch.manual_seed(0)
    logits = sliding_window(net.to(device), x, patch, ncls,
                            mirror=card.get("mirroring", False) if mirror is None else mirror,
                            progress=lambda f, s: report(0.05 + 0.85 * f, s), cancel=cancel,
                            step=float(card.get("tile_step", 0.5)))
    report(0.92, "resampling labels")
    post = card.get("postprocessing", {})
    refine = post.get("refine_by_hu")  # read_card refuses it with nearest resampling
    if inputs_of:
        if card.get("label_resampling", "linear") == "nearest":
            raise ModelError("refiner inputs need the class probabilities on the CT grid; "
                             "the card resamples labels by nearest neighbour")
        refine = dict(zip(("label", "reference"), inputs_of))
    logits, box = _clean_on_model_grid(logits, box, post.get("largest_component", []),
                                       post.get("tree_of"))
    if box is None:  # nothing found
        out = _empty_labels(ct)
    elif card.get("label_resampling", "linear") == "nearest":
        labels = np.zeros(arr.shape, np.uint8)
        labels[box] = np.argmax(logits, axis=0).astype(np.uint8)
        lab_img = sitk.GetImageFromArray(labels)
        lab_img.CopyInformation(work)
        out = sitk.Resample(lab_img, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    else:
        keep = (refine["label"], refine["reference"]) if refine else ()
        out = labels_on_grid(logits, box, work, ct, card.get("label_resampling", "linear"),
                             keep=keep)
        if refine:
            out, probs, lo = out
    if box is not None and post.get("brighter_than"):
        out = relabel_not_brighter(out, ct, **post["brighter_than"])
    if box is not None and post.get("grow_by_hu"):
        report(0.95, "growing the arteries to the lumen edge")
        out, _ = grow_on_grid(out, ct, **post["grow_by_hu"])
    if inputs_of:
        return (out, probs, lo) if box is not None else None
    if box is not None and refine:
        report(0.96, "refining calcium")
        out = refine_on_grid(out, ct, probs, lo, load_refiner(info), **refine)
    if box is not None and post.get("branches"):
        report(0.97, "side branches")
        from .branches import segment_branches

        out = segment_branches(ct, out, post["branches"], segment, device=device,
                               threads=threads, cancel=cancel)
    report(1.0, "done")
    return out
