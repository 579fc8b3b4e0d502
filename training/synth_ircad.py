"""Real artery trees for the synthesis: the eight 3D-IRCADb-01 expert label maps.

``../shared/data/ircad_label_maps/ircadNN_labels.nii.gz`` (patients 4, 5, 6, 8, 9, 11, 12,
13; their CT is not available) hold real artery trees (aorta, celiac trunk and its
branches, SMA, renal arteries reaching the kidneys in three, iliac bifurcations), real
veins (vena cava, portal and renal veins), kidneys, liver, spleen, pancreas, stomach, bone
and the body outline.  :func:`load_ircad` turns one into a synthesis anatomy on the 1.5 mm
LPS grid of ``synth_anatomy``: the expert arteries grouped by where each branch leaves the
aorta (``artery_tree.group_expert``; branches of no group, lumbar arteries and the IMA,
painted as arteries of no group), the real veins as veins, the organs as they are, the
body outside the organs fat with an abdominal wall of muscle.  The side-artery geometry the
procedural branches lack (origins, calibres, courses beside real veins) comes from real
patients here.

Licence: CC BY-NC-ND 4.0 (use to train, never redistribute): nothing of these maps is
written into the project; a model trained with them says so in its card.  The two IRCAD
CTs with expert arteries (patients 1 and 7, ``ircad01_abdomen`` and ``ircad07_abdomen``)
are other patients and stay measurement data.  Not installed into Slicer.
"""

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from artery_tree import group_expert
from scipy import ndimage
from synth_anatomy import DATA, _kidneys, _lps
from synth_geometry import (AIR, AORTA, ARTX, BONE, CORTEX, FAT, FLUID, ILIAC, IVC, LIVER, MARROW,
                            MEDULLA, MES, MUSCLE, PANCREAS, PORTAL, RENAL, SOFT, SPACING, SPLEEN,
                            STOMACH, VEIN)

FOLDER = DATA / "ircad_label_maps"
#: IRCAD label id -> synthesis class (1 artery and 15 skin are handled apart)
IRCAD = {2: VEIN, 3: IVC, 4: PORTAL, 5: LIVER, 6: SPLEEN, 9: PANCREAS, 10: STOMACH, 11: FLUID,
         12: BONE, 13: SOFT, 14: SOFT}
IRCAD_KIDNEYS = (7, 8)  # left, right
GROUP_CLASS = {1: AORTA, 2: ILIAC, 3: MES, 4: RENAL}


def available():
    return bool(sorted(FOLDER.glob("ircad*_labels.nii.gz")))


def load_ircad(path, wall_mm=10.0):
    """``(name, cls, hu, kidneys, records)`` of one IRCAD label map: the synthesis classes on
    the 1.5 mm LPS grid (``hu`` None: painted), the kidney masks (left, right) and the
    grouped branches (``artery_tree.group_expert`` records)."""
    lab = _lps(path, sitk.sitkNearestNeighbor)
    body = ndimage.binary_fill_holes(lab > 0)
    cls = np.full(lab.shape, AIR, np.int8)
    cls[body] = FAT
    inner = ndimage.binary_erosion(body, iterations=max(int(wall_mm / SPACING), 1))
    cls[body & ~inner] = MUSCLE  # the abdominal and back wall
    for k, v in IRCAD.items():
        cls[lab == k] = v
    bone = lab == 12
    cls[bone & ndimage.binary_erosion(bone, iterations=2)] = MARROW
    cortex, medulla, kid = _kidneys(lab, IRCAD_KIDNEYS)
    cls[cortex], cls[medulla] = CORTEX, MEDULLA
    artery = lab == 1
    records = []
    if artery.any():
        img = sitk.GetImageFromArray(artery.astype(np.uint8))
        img.SetSpacing([SPACING] * 3)
        groups, records, _ = group_expert(img, img)
        cls[artery] = ARTX
        for g, c in GROUP_CLASS.items():
            cls[groups == g] = c
    return Path(path).name.split("_")[0], cls, None, kid, records


def anatomies(rng, plaques):
    """One ``synth_anatomy.Anatomy`` per IRCAD label map that holds an aorta, with
    ``plaques(cls, grp, rng)`` put on its aortic and iliac walls."""
    from synth_anatomy import Anatomy
    from synth_geometry import GROUP_OF

    out = []
    for path in sorted(FOLDER.glob("ircad*_labels.nii.gz")):
        name, cls, hu, _, records = load_ircad(path)
        if not (cls == AORTA).any():
            continue
        grp = np.zeros(cls.shape, np.int8)
        for c, g in GROUP_OF.items():
            grp[cls == c] = g
        plaques(cls, grp, rng)
        out.append(Anatomy(name, cls, grp, hu))
    return out
