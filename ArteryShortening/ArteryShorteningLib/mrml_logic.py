"""MRML adapter of the shortening: segmentation / label map nodes in, new nodes out.

``ArteryShorteningMRMLLogic().process(inputNode)`` is what the module's Logic,
the CalciumScoring pipeline and the Python console call.  It never modifies the
input node unless ``in_place=True`` is asked for explicitly.
"""

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from CalciumScoringLib import mrml_nodes as mn
from CalciumScoringLib.segment_terms import GROUP_LABELS, match_group

from . import __version__
from .shortening import shorten_arteries

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


def _reference_labelmap(segmentation_node, reference_volume):
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


def _color_table_ids(scene):
    nodes = scene.GetNodesByClass("vtkMRMLColorTableNode")
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


class ArteryShorteningMRMLLogic:
    """Run :func:`~ArteryShorteningLib.shorten_arteries` on scene nodes."""

    def process(self, input_node, output_node=None, reference_volume=None, mapping=None,
                in_place=False, **params):
        """Shorten the arteries of ``input_node`` (segmentation or label map volume).

        Returns ``(output_node, table_node, result)``; ``output_node`` is a new
        segmentation node (or label map node for label map input) unless
        ``output_node`` or ``in_place=True`` is given.

        >>> logic = ArteryShorteningMRMLLogic()                    # doctest: +SKIP
        >>> out, table, res = logic.process(getNode("Segmentation"), stump_length_mm=35)
        """
        scene = input_node.GetScene()
        if input_node.IsA("vtkMRMLSegmentationNode"):
            return self._process_segmentation(scene, input_node, output_node, reference_volume,
                                              mapping, in_place, params)
        if input_node.IsA("vtkMRMLLabelMapVolumeNode") or input_node.IsA("vtkMRMLScalarVolumeNode"):
            groups = mn.image_from_volume_node(input_node)
            res = shorten_arteries(sitk.Cast(groups, sitk.sitkUInt8), **params)
            if in_place:
                output_node = input_node
            if output_node is None:
                output_node = mn.volume_node_from_image(
                    scene, res.labelmap, f"{input_node.GetName()} shortened", labelmap=True)
            else:
                slicer.util.updateVolumeFromArray(output_node, sitk.GetArrayFromImage(res.labelmap))
                mn.set_node_geometry(output_node, res.labelmap)
            return output_node, self._finish(scene, input_node, output_node, res), res
        raise TypeError("input must be a segmentation node or a label map volume node, got "
                        f"{input_node.GetClassName()}")

    def _process_segmentation(self, scene, node, output_node, reference_volume, mapping,
                              in_place, params):
        segment_groups(node, mapping)  # a clear error before any work
        colors_before = _color_table_ids(scene)
        tmp = _reference_labelmap(node, reference_volume)
        try:
            gs = read_group_segments(node, tmp, mapping)
            res = shorten_arteries(gs.image, **params)
            if in_place:
                output_node = node
            if output_node is None:
                output_node = scene.AddNewNodeByClass(
                    "vtkMRMLSegmentationNode", scene.GenerateUniqueName(f"{node.GetName()} shortened"))
                output_node.CreateDefaultDisplayNodes()
                output_node.SetReferenceImageGeometryParameterFromVolumeNode(tmp)
            write_group_segments(output_node, gs, sitk.GetArrayViewFromImage(res.labelmap), tmp)
        finally:  # the temporary label map, its display node and the colour table export made
            mn.remove_node(tmp)
            for cid in _color_table_ids(scene) - colors_before:
                scene.RemoveNode(scene.GetNodeByID(cid))
        return output_node, self._finish(scene, node, output_node, res), res

    def _finish(self, scene, input_node, output_node, res):
        df = res.branches.copy()
        df["takeoff_lps"] = df["takeoff_lps"].astype(str)
        table = mn.table_node_from_dataframe(scene, df, f"{input_node.GetName()} shortening report")
        prov = {"algorithm": "ArteryShortening", "version": __version__,
                "parameters": res.parameters, "input": input_node.GetName(),
                "aorta_cut_z_mm": res.aorta_cut_z_mm, "warnings": res.warnings}
        mn.set_provenance(output_node, prov)
        mn.set_provenance(table, prov)
        return table
