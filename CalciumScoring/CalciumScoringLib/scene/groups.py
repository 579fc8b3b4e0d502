"""Artery-group segmentations <-> label maps (MRML adapter).

Which segment of a segmentation node is which artery group (aorta, iliac, mesenteric,
renal): by the group tag VascularCalcium writes, by SNOMED CT terminology, or by name
(:func:`~.terms.match_group`; ``mapping`` overrides it).  ``read_group_segments`` makes
the 1-4 label map on a reference grid and keeps each segment's name, colour and
terminology, so that ``write_group_segments`` gives the output segments the same.
Shared by the ArteryShortening module and the CalciumScoring pipeline.
"""

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from . import nodes as mn
from .terms import GROUP_LABELS, match_group

CODE_TO_GROUP = {"7832008": "aorta", "15825003": "aorta", "73634005": "iliac",
                 "57850000": "mesenteric", "42258001": "mesenteric", "2841007": "renal"}


class _CopiedTerm:
    """Name, colour and terminology of an input segment, reused for its output segment."""

    def __init__(self, segment, key):
        self.key, self.name = key, segment.GetName()
        self.color = tuple(segment.GetColor())
        self.terminology = segment.GetTerminology() if hasattr(segment, "GetTerminology") else ""


def segment_group_guesses(segmentation_node, mapping=None):
    """``[(segment id, segment name, group or None)]`` for every segment, never raising.

    The group comes from ``mapping`` (segment id or name -> group; ``None`` or ""
    excludes the segment), else the segment's group tag, its name, or its SNOMED CT
    terminology code.  The module's mapping table shows these guesses for the user
    to correct.
    """
    seg = segmentation_node.GetSegmentation()
    out = []
    for i in range(seg.GetNumberOfSegments()):
        sid = seg.GetNthSegmentID(i)
        s = seg.GetSegment(sid)
        if mapping and (sid in mapping or s.GetName() in mapping):
            group = mapping.get(sid, mapping.get(s.GetName())) or None
        else:
            tag = mn.segment_tag(s, mn.GROUP_TAG)
            group = tag if tag in GROUP_LABELS else None
            if group is None:
                group = match_group(s.GetName())
            if group is None:
                term = s.GetTerminology() or ""
                group = next((g for code, g in CODE_TO_GROUP.items() if f"^{code}^" in term), None)
        out.append((sid, s.GetName(), group))
    return out


def segment_groups(segmentation_node, mapping=None):
    """Segment id -> group name, from ``mapping`` (id or name -> group), tags, names or codes.

    Raises a ValueError listing the segments when no segment can be mapped to the aorta.
    """
    out = {}
    for sid, name, group in segment_group_guesses(segmentation_node, mapping):
        if group is None:
            continue
        if group not in GROUP_LABELS:
            raise ValueError(f"segment {name!r} mapped to unknown group {group!r}; "
                             f"use one of {sorted(GROUP_LABELS)}")
        out[sid] = group
    if "aorta" not in out.values():
        names = [name for _, name, _ in segment_group_guesses(segmentation_node)]
        raise ValueError(f"no segment of {segmentation_node.GetName()!r} could be mapped to the "
                         f"aorta (segments: {names}); pass mapping={{'<segment name>': 'aorta', ...}}")
    return out


def reference_labelmap(segmentation_node, reference_volume):
    """A temporary label map node with the segmentation's (or the reference's) geometry."""
    scene = segmentation_node.GetScene()
    lm = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__vc_reference_tmp")
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    ids = vtk.vtkStringArray()
    seg = segmentation_node.GetSegmentation()
    for i in range(seg.GetNumberOfSegments()):
        ids.InsertNextValue(seg.GetNthSegmentID(i))
    logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, lm, reference_volume)
    return lm


@dataclass
class GroupSegments:
    """Artery-group segments read from a segmentation on a reference grid."""

    image: sitk.Image  # label map 1 aorta, 2 iliac, 3 mesenteric, 4 renal
    masks: dict  # segment id -> boolean (k, j, i) array
    groups: dict  # segment id -> group name
    terms: dict  # segment id -> name/colour/terminology to reuse for outputs


def read_group_segments(node, reference_node, mapping=None):
    """Read the group segments of ``node`` on ``reference_node``'s grid (volume node).

    Overlaps are resolved so that the aorta owns the ostia, as in the networks' labels.
    """
    groups_of = segment_groups(node, mapping)
    masks = {sid: mn.segment_array(node, sid, reference_node) > 0 for sid in groups_of}
    ref = mn.image_from_volume_node(reference_node)
    lab = np.zeros(sitk.GetArrayViewFromImage(ref).shape, np.uint8)
    for sid, g in groups_of.items():
        if g != "aorta":
            lab[masks[sid]] = GROUP_LABELS[g]
    for sid, g in groups_of.items():
        if g == "aorta":
            lab[masks[sid]] = 1
    img = sitk.GetImageFromArray(lab)
    img.CopyInformation(ref)
    seg = node.GetSegmentation()
    terms = {sid: _CopiedTerm(seg.GetSegment(sid), sid) for sid in groups_of}
    return GroupSegments(img, masks, groups_of, terms)


def write_group_segments(output_node, gs, labels, reference_node):
    """Write each input segment restricted to its group in ``labels`` (e.g. the shortened map)."""
    for sid, g in gs.groups.items():
        mn.add_segment(output_node, gs.terms[sid], gs.masks[sid] & (labels == GROUP_LABELS[g]),
                       reference_node, group=g)
