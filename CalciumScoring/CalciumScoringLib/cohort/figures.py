"""Pictures of a case: label overlays and projections (matplotlib, no display needed)."""

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

GROUP_COLOURS = {1: (0.85, 0.40, 0.31), 2: (0.87, 0.51, 0.40), 3: (0.94, 0.47, 0.47),
                 4: (0.73, 0.30, 0.25)}
CALCIUM_COLOUR = (0.95, 0.84, 0.57)


def _axial(img):
    """Resample to an axis-aligned (identity direction) grid so views are anatomical."""
    if np.allclose(np.array(img.GetDirection()).reshape(3, 3), np.eye(3)):
        return img
    return sitk.Resample(img, _identity_ref(img), sitk.Transform(),
                         sitk.sitkNearestNeighbor, float(sitk.GetArrayViewFromImage(img).min()))


def _identity_ref(img):
    size, sp = np.array(img.GetSize()), np.array(img.GetSpacing())
    corners = [img.TransformContinuousIndexToPhysicalPoint([float(c) for c in (i, j, k)])
               for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)]
    lo, hi = np.min(corners, 0), np.max(corners, 0)
    s = float(sp.min())
    ref = sitk.Image([int(np.ceil((h - l) / s)) + 1 for l, h in zip(lo, hi)], sitk.sitkUInt8)
    ref.SetSpacing([s] * 3)
    ref.SetOrigin(lo.tolist())
    return ref


def _rgba(labels, colours):
    out = np.zeros(labels.shape + (4,))
    for v, c in colours.items():
        out[labels == v] = (*c, 0.85)
    return out


def case_figure(path, ct, groups_full, groups_short=None, calcium=None, title="", table=None,
                alert=None):
    """Save a one-page PNG: coronal projections of the arteries (full/shortened) and CT views;
    ``alert`` (a QC line the reader must see first) goes into the title, in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ctA = sitk.GetArrayFromImage(_axial(ct)).astype(np.float32)
    gf = sitk.GetArrayFromImage(sitk.Resample(groups_full, _axial(ct), sitk.Transform(),
                                              sitk.sitkNearestNeighbor, 0))
    gs = None if groups_short is None else sitk.GetArrayFromImage(
        sitk.Resample(groups_short, _axial(ct), sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    ca = None if calcium is None else sitk.GetArrayFromImage(
        sitk.Resample(calcium, _axial(ct), sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    sp = _axial(ct).GetSpacing()
    aspect = sp[2] / sp[0]
    ncol = 5 if table is None else 6
    fig, ax = plt.subplots(1, ncol, figsize=(4.2 * ncol, 6.5))

    def mip(lab):
        proj = np.zeros(lab.shape[::2], lab.dtype)
        for v in (1, 2, 3, 4):  # front-most label wins: a max projection by label
            proj[(lab == v).any(axis=1)] = v
        return proj[::-1]

    ax[0].imshow(mip(gf) * 0, cmap="gray", vmin=0, vmax=1, aspect=aspect)
    ax[0].imshow(_rgba(mip(gf), GROUP_COLOURS), aspect=aspect)
    ax[0].set_title("artery groups (coronal projection)")
    if gs is not None:
        ax[1].imshow(mip(gf) * 0, cmap="gray", vmin=0, vmax=1, aspect=aspect)
        ax[1].imshow(_rgba(mip(gf) > 0, {True: (0.5, 0.5, 0.5)}), aspect=aspect)
        ax[1].imshow(_rgba(mip(gs), GROUP_COLOURS), aspect=aspect)
        ax[1].set_title("shortened (grey: trimmed)")
    if ca is not None:
        ax[1].imshow(_rgba((ca > 0).any(axis=1)[::-1], {True: CALCIUM_COLOUR}), aspect=aspect)
    k = int(np.argmax((gf == 4).sum((1, 2)))) if (gf == 4).any() else ctA.shape[0] // 2
    axial = sp[1] / sp[0]  # every panel at physical aspect (a pixel's height / width)
    ax[2].imshow(ctA[k], cmap="gray", vmin=-200, vmax=700, aspect=axial)
    ax[2].imshow(_rgba(gf[k], GROUP_COLOURS), alpha=0.35, aspect=axial)
    if ca is not None:
        ax[2].imshow(_rgba(ca[k] > 0, {True: (1.0, 0.55, 0.0)}), aspect=axial)
    ax[2].set_title(f"axial slice {k} (renal level)")
    j = int(np.median(np.nonzero(gf == 1)[1])) if (gf == 1).any() else ctA.shape[1] // 2
    ax[3].imshow(ctA[:, j, :][::-1], cmap="gray", vmin=-200, vmax=700, aspect=aspect)
    ax[3].imshow(_rgba(gf[:, j, :][::-1], GROUP_COLOURS), alpha=0.35, aspect=aspect)
    if ca is not None:
        ax[3].imshow(_rgba(ca[:, j, :][::-1] > 0, {True: (1.0, 0.55, 0.0)}), aspect=aspect)
    ax[3].set_title("coronal CT through the aorta (arteries, calcium in orange)")
    # 3D-like view: maximum intensity projection (coronal) of the CT inside the arteries'
    # neighbourhood, calcification in colour
    near = ndimage.binary_dilation(gf > 0, iterations=3) if (gf > 0).any() else np.ones_like(gf, bool)
    mipct = np.where(near, ctA, -1000).max(axis=1)[::-1]
    ax[4].imshow(mipct, cmap="gray", vmin=0, vmax=1200, aspect=aspect)
    if ca is not None:
        ax[4].imshow(_rgba((ca > 0).any(axis=1)[::-1], {True: (1.0, 0.55, 0.0)}), aspect=aspect)
    ax[4].set_title("MIP around the arteries, calcium in orange")
    for a in ax[:5]:
        a.set_xticks([])
        a.set_yticks([])
    if table is not None:
        ax[5].axis("off")
        tab = ax[5].table(cellText=table.values, colLabels=list(table.columns), loc="center")
        tab.auto_set_font_size(False)
        tab.set_fontsize(9)
        tab.scale(1.25, 1.8)
    if alert:  # a result the reader must check first: in red, above everything
        fig.suptitle(f"{title}\n{alert}", color="#d00000", fontweight="bold")
    else:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


AGREEMENT_COLOURS = {1: (0.20, 0.75, 0.30), 2: (0.25, 0.45, 0.95), 3: (0.95, 0.25, 0.20)}


def comparison_figure(path, ct, reference, test, title="", labels=None):
    """Save a PNG comparing a test mask with a reference on the CT.

    Green: both; blue: reference only (missed); red: test only (extra).  Panels: coronal
    projection, three axial slices through the reference (25/50/75 % of its extent) and a
    coronal slice through its centre.  ``labels`` (value -> name) adds Dice per label to the
    title; all labels > 0 count as foreground for the colours.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = _axial(ct)
    ctA = sitk.GetArrayFromImage(grid).astype(np.float32)
    ref, tst = (sitk.GetArrayFromImage(sitk.Resample(m, grid, sitk.Transform(),
                                                     sitk.sitkNearestNeighbor, 0))
                for m in (reference, test))
    agree = np.select([(ref > 0) & (tst > 0), ref > 0, tst > 0], [1, 2, 3], 0)
    if labels:
        from ..validation.evaluate import overlap

        a, b = sitk.GetArrayViewFromImage(test), sitk.GetArrayViewFromImage(reference)
        dice = [f"{name} {overlap(a == v, b == v)['dice']:.2f}"
                for v, name in labels.items() if (b == v).any()]
        title = f"{title}\nDice: {', '.join(dice)}" if dice else title
    sp = grid.GetSpacing()
    aspect = sp[2] / sp[0]
    fig, ax = plt.subplots(1, 5, figsize=(21, 5.5))
    proj = np.zeros(agree.shape[::2], agree.dtype)
    for v in (3, 2, 1):  # agreement drawn over misses over extras
        proj[(agree == v).any(axis=1)] = v
    ax[0].imshow(np.zeros(proj.shape), cmap="gray", vmin=0, vmax=1, aspect=aspect)
    ax[0].imshow(_rgba(proj[::-1], AGREEMENT_COLOURS), aspect=aspect)
    ax[0].set_title("coronal projection")
    zs = np.nonzero((ref > 0).any(axis=(1, 2)))[0]
    zs = zs if zs.size else np.arange(ctA.shape[0])
    for i, q in enumerate((0.25, 0.5, 0.75)):
        k = int(zs[int(q * (zs.size - 1))])
        axial = grid.GetSpacing()[1] / grid.GetSpacing()[0]  # physical aspect
        ax[1 + i].imshow(ctA[k], cmap="gray", vmin=-200, vmax=500, aspect=axial)
        ax[1 + i].imshow(_rgba(agree[k], AGREEMENT_COLOURS), alpha=0.55, aspect=axial)
        ax[1 + i].set_title(f"axial slice {k}")
    j = int(np.median(np.nonzero(ref > 0)[1])) if (ref > 0).any() else ctA.shape[1] // 2
    ax[4].imshow(ctA[:, j, :][::-1], cmap="gray", vmin=-200, vmax=500, aspect=aspect)
    ax[4].imshow(_rgba(agree[:, j, :][::-1], AGREEMENT_COLOURS), alpha=0.55, aspect=aspect)
    ax[4].set_title("coronal slice")
    for a_ in ax:
        a_.set_xticks([])
        a_.set_yticks([])
    fig.suptitle(f"{title}\ngreen: both, blue: reference only, red: network only")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
