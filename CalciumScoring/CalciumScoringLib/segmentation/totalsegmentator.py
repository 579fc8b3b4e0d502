"""TotalSegmentator's arteries as an artery source: its outputs mapped to the artery groups.

TotalSegmentator (Wasserthal et al., Radiology: AI 2023) writes either a folder of one
mask per structure (``aorta.nii.gz``, ``iliac_artery_left.nii.gz``, ...) or, with
``--ml``, one multi-label file whose class names sit in the NIfTI header extension (a
CARET ``LabelTable``).  Its open ``total`` task labels the aorta and the iliac arteries;
its licensed ``renal_arteries`` task the celiac trunk, the superior mesenteric artery and
the renal arteries.  ``STRUCTURES`` maps those names to the groups (1 aorta, 2 iliac,
3 mesenteric, 4 renal); every other structure (organs, veins, bones) is ignored.  A group
none of whose structures is in the output is *missing* (not scored, reported), unlike a
group that is present but empty in the field of view.

>>> from CalciumScoringLib.segmentation.totalsegmentator import load_groups  # doctest: +SKIP
>>> res = load_groups("case01_totalseg/", ct)                                   # doctest: +SKIP
>>> res.image, res.missing                        # groups on the CT grid, ["mesenteric", "renal"]
"""

import gzip
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..imagecheck import on_grid

#: artery groups of the model-B convention (../shared/METHOD.md §1)
GROUPS = {"aorta": 1, "iliac": 2, "mesenteric": 3, "renal": 4}
#: TotalSegmentator structure name -> group (names of its ``total`` and ``renal_arteries``
#: tasks, v1 and v2; both sides and the combined renal label)
STRUCTURES = {
    "aorta": "aorta",
    "iliac_artery_left": "iliac", "iliac_artery_right": "iliac",
    "common_iliac_artery_left": "iliac", "common_iliac_artery_right": "iliac",
    "celiac_trunk": "mesenteric", "superior_mesenteric_artery": "mesenteric",
    "renal_arteries": "renal", "renal_artery_left": "renal", "renal_artery_right": "renal",
}
#: which task gives which group (for the messages and the README)
TASKS = {"aorta": "total", "iliac": "total", "mesenteric": "renal_arteries (licensed)",
         "renal": "renal_arteries (licensed)"}
_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


@dataclass
class TSGroups:
    """``image``: groups 0-4 on the reference grid (uint8); ``present`` / ``missing``: group
    names; ``structures``: structure name -> group for what was used; ``source``."""
    image: sitk.Image
    present: list
    missing: list
    structures: dict = field(default_factory=dict)
    source: str = ""

    def provenance(self):
        return {"source": self.source, "structures": self.structures,
                "missing_groups": self.missing}


def read_label_table(path):
    """``{label id: name}`` from the label table TotalSegmentator writes into a NIfTI header
    extension, or None when the file has none (or is not NIfTI)."""
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(352)
        if len(head) < 352 or struct.unpack("<i", head[:4])[0] != 348 or head[348] != 1:
            return None
        offset = int(struct.unpack("<f", head[108:112])[0])
        ext = f.read(max(offset - 352, 0))
    text = ""
    pos = 0
    while pos + 8 <= len(ext):
        size, _code = struct.unpack("<ii", ext[pos:pos + 8])
        if size < 8:
            break
        text += ext[pos + 8:pos + size].decode("utf-8", "replace")
        pos += size
    labels = re.findall(r'<Label\s+Key="(\d+)"[^>]*>\s*<!\[CDATA\[(.*?)\]\]>', text, re.S)
    return {int(k): v.strip() for k, v in labels} or None


def read_classes(path):
    """``{label id: name}`` from a JSON file of id -> name (TotalSegmentator's class map)."""
    raw = json.loads(Path(path).read_text())
    try:
        return {int(k): str(v) for k, v in raw.items()}
    except (AttributeError, ValueError) as exc:
        raise ValueError(f"{path}: expected a JSON object of label id -> structure name "
                         '(e.g. {"52": "aorta", "65": "iliac_artery_left"})') from exc


def _on_grid(img, reference):
    return img if reference is None else on_grid(img, reference)


def _result(found, masks, reference, source):
    """Groups image from ``masks`` (structure -> bool array) on ``reference``'s grid."""
    present = sorted({STRUCTURES[s] for s in found}, key=GROUPS.get)
    missing = [g for g in GROUPS if g not in present]
    if "aorta" not in present:
        raise ValueError(f"{source} has no aorta (structures found: {sorted(found) or 'none'}); "
                         "run TotalSegmentator's 'total' task, or give the aorta in --groups")
    lab = None
    for s in sorted(found, key=lambda s: -GROUPS[STRUCTURES[s]]):  # aorta written last
        m = masks[s]
        if lab is None:
            lab = np.zeros(m.shape, np.uint8)
        lab[m] = GROUPS[STRUCTURES[s]]
    return present, missing, lab


def groups_from_multilabel(img, reference=None, classes=None, source="multi-label file"):
    """Groups from a TotalSegmentator multi-label image; ``classes`` (id -> name) defaults
    to the label table of the file (pass it for an image read without one)."""
    if classes is None:
        raise ValueError(f"{source} carries no label table: pass the class names of its "
                         "labels (--groups-classes CLASSES.json, id -> name)")
    img = _on_grid(sitk.Cast(img, sitk.sitkUInt16), reference)
    arr = sitk.GetArrayViewFromImage(img)
    found = {name: k for k, name in classes.items() if name in STRUCTURES}
    masks = {name: arr == k for name, k in found.items()}
    present, missing, lab = _result(found, masks, reference, source)
    out = sitk.GetImageFromArray(lab)
    out.CopyInformation(img)
    return TSGroups(out, present, missing, {n: STRUCTURES[n] for n in found}, source)


def is_totalsegmentator_folder(path):
    """True for a folder holding at least one TotalSegmentator structure file."""
    p = Path(path)
    return p.is_dir() and any((p / f"{s}{x}").exists() for s in STRUCTURES for x in _SUFFIXES)


def groups_from_folder(folder, reference=None):
    """Groups from a TotalSegmentator output folder (one mask file per structure)."""
    folder = Path(folder)
    files = {s: folder / f"{s}{x}" for s in STRUCTURES for x in _SUFFIXES
             if (folder / f"{s}{x}").exists()}
    if not files:
        raise ValueError(f"{folder} holds none of TotalSegmentator's artery files "
                         f"({', '.join(s + '.nii.gz' for s in STRUCTURES)})")
    imgs = {s: _on_grid(sitk.ReadImage(str(p)), reference) for s, p in files.items()}
    ref = reference if reference is not None else next(iter(imgs.values()))
    masks = {s: sitk.GetArrayViewFromImage(i) > 0 for s, i in imgs.items()}
    shapes = {m.shape for m in masks.values()}
    if len(shapes) > 1:
        raise ValueError(f"the masks in {folder} are on different grids; pass the CT so they "
                         "are resampled onto it")
    present, missing, lab = _result(set(files), masks, reference, f"the folder {folder}")
    out = sitk.GetImageFromArray(lab)
    out.CopyInformation(ref)
    return TSGroups(out, present, missing, {s: STRUCTURES[s] for s in files},
                    f"TotalSegmentator folder {folder}")


def load_groups(path, reference=None, classes=None):
    """Artery groups from a TotalSegmentator output at ``path`` (folder or multi-label file),
    or None when ``path`` is a plain groups label map (1-4) without a label table and no
    ``classes`` are given.  ``classes``: id -> name, or a JSON file of it."""
    p = Path(path)
    if p.is_dir():
        return groups_from_folder(p, reference)
    table = read_label_table(p)
    if classes is not None and not isinstance(classes, dict):
        classes = read_classes(classes)
    if table is None and classes is None:
        return None
    return groups_from_multilabel(sitk.ReadImage(str(p)), reference, table or classes,
                                  f"TotalSegmentator multi-label file {p.name}")
