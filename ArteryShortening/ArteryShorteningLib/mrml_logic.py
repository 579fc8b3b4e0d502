"""MRML adapter of the shortening: segmentation / label map nodes in, new nodes out.

``ArteryShorteningMRMLLogic().process(inputNode)`` is what the module's Logic,
the CalciumScoring pipeline and the Python console call.  It never modifies the
input node unless ``in_place=True`` is asked for explicitly.  Reading and writing the
artery groups of a segmentation (names, terminology, tags) is
:mod:`CalciumScoringLib.scene.groups`, shared with the CalciumScoring pipeline.
"""

import SimpleITK as sitk
import slicer
from CalciumScoringLib.scene import nodes as mn
from CalciumScoringLib.scene.groups import (
    read_group_segments,
    reference_labelmap,
    segment_groups,
    write_group_segments,
)

from . import __version__
from .shortening import shorten_arteries


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
        tmp = reference_labelmap(node, reference_volume)
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
