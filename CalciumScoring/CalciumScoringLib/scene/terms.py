"""Standard segment names, colours and terminology codes (pure Python).

One colour/terminology table, ``CalciumScoring/Resources/ColorTables/VascularCalcium.csv``,
in the CSV layout Slicer (>= 5.10) reads as a colour table, carries label value,
name, colour and SNOMED CT codes.  This module reads it and formats the codes as
Slicer segment terminology strings, so the MRML adapters, the CLI and the tests
share one definition.
"""

import csv
from dataclasses import dataclass
from functools import lru_cache

from ..resources import resources_dir

#: Model B label values (../shared/METHOD.md §1)
GROUP_LABELS = {"aorta": 1, "iliac": 2, "mesenteric": 3, "renal": 4}
#: Model A label values
ARTERY_LABELS = {"artery": 1, "calcification": 2}

_CONTEXT = "Segmentation category and type - DICOM master list"
_REGION_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class SegmentTerm:
    """Name, colour (0-1 RGB) and coded terminology of one segment kind."""

    key: str
    name: str
    color: tuple
    category: tuple
    type: tuple
    type_modifier: tuple = ("", "", "")

    @property
    def terminology(self):
        """The segment terminology entry string Slicer stores in a segment."""
        def code(c):
            return "^".join(c)
        return "~".join([_CONTEXT, code(self.category), code(self.type),
                         code(self.type_modifier), _REGION_CONTEXT, "^^", "^^"])


@lru_cache(maxsize=None)
def terms():
    """All segment kinds of the colour table, by key (``aorta``, ``renal_left``, ...)."""
    path = resources_dir() / "ColorTables" / "VascularCalcium.csv"
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["Key"]] = SegmentTerm(
                key=row["Key"], name=row["Name"],
                color=tuple(int(row[c]) / 255.0 for c in ("Color_R", "Color_G", "Color_B")),
                category=tuple(row["Category_" + k] for k in
                               ("CodingSchemeDesignator", "CodeValue", "CodeMeaning")),
                type=tuple(row["Type_" + k] for k in
                           ("CodingSchemeDesignator", "CodeValue", "CodeMeaning")),
                type_modifier=tuple(row["TypeModifier_" + k] for k in
                                    ("CodingSchemeDesignator", "CodeValue", "CodeMeaning")),
            )
    return out


def term(key):
    """The :class:`SegmentTerm` of ``key``; a clear error for unknown keys."""
    t = terms()
    if key not in t:
        raise KeyError(f"unknown segment kind {key!r}; known: {', '.join(sorted(t))}")
    return t[key]


def group_segments():
    """``(label value, SegmentTerm)`` for the four model-B groups."""
    return [(v, term(k)) for k, v in GROUP_LABELS.items()]


def artery_segments():
    """``(label value, SegmentTerm)`` for model A (artery, calcification)."""
    return [(v, term(k)) for k, v in ARTERY_LABELS.items()]


def match_group(segment_name):
    """Map a user's segment name to a group key, or ``None`` when it names no group.

    Accepts the standard names and common variants ("Abdominal aorta",
    "left renal artery", "SMA", "celiac", "common iliac artery right", ...) and
    TotalSegmentator's structure names ("aorta", "iliac_artery_left", "celiac_trunk",
    "superior_mesenteric_artery", "renal_arteries").  Veins ("iliac_vena_left", "renal
    vein", "portal_vein_and_splenic_vein"), calcifications and organs ("small_bowel",
    "adrenal_gland_left", "kidney_left") name no group.
    """
    n = segment_name.strip().lower().replace("_", " ").replace("-", " ")
    words = set(n.split())
    if "calcif" in n or "vein" in n or "vena" in n or "venous" in n:
        return None
    if "aort" in n:
        return "aorta"
    if "iliac" in n:
        return "iliac"
    if "renal" in words and not words & {"cyst", "pelvis", "gland", "calyx"}:  # not adrenal
        return "renal"
    if "mesenteric" in n or "celiac" in n or "coeliac" in n or "sma" in words:
        return "mesenteric"
    return None
