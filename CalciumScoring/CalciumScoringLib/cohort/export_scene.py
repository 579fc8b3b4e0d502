"""Files a reviewer opens in Slicer: ``.seg.nrrd`` segmentations and a ``.mrb`` scene bundle.

Written through the real MRML library (slicer-core, headless scene), so names,
colours, terminology and geometry are exactly what Slicer reads.
"""

from pathlib import Path

from ..scene import nodes as mn
from ..scene import terms as st


def _write_segmentation(node, path):
    storage = node.CreateDefaultStorageNode()
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise OSError(f"could not write {path}")


def write_case_scene(out_dir, name, ct, groups_full, groups_short, calcium, scores, provenance):
    """Write arteries.seg.nrrd, arteries_full.seg.nrrd, calcifications.seg.nrrd and scene.mrb.

    ``scores`` is the score DataFrame.  Returns the list of written paths.
    """
    import SimpleITK as sitk

    from ..scene.headless import Harness

    out = Path(out_dir)
    h = Harness()
    try:
        scene = h.scene
        vol = mn.volume_node_from_image(scene, ct, name)
        short = mn.segmentation_node_from_labelmap(scene, groups_short, st.group_segments(), vol,
                                                   f"{name} arteries shortened")
        full = mn.segmentation_node_from_labelmap(scene, groups_full, st.group_segments(), vol,
                                                  f"{name} arteries")
        calc = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} calcifications")
        calc.CreateDefaultDisplayNodes()
        calc.SetReferenceImageGeometryParameterFromVolumeNode(vol)
        c = sitk.GetArrayViewFromImage(calcium) > 0
        g = sitk.GetArrayViewFromImage(groups_full)
        term = st.term("calcification")
        for group, v in st.GROUP_LABELS.items():
            sid = mn.add_segment(calc, term, c & (g == v), vol, segment_id=f"{group}_calcification",
                                 group=group)
            calc.GetSegmentation().GetSegment(sid).SetName(f"{group} calcification")
        sid = mn.add_segment(calc, term, c & (g == 0), vol, segment_id="other_calcification")
        calc.GetSegmentation().GetSegment(sid).SetName("calcification outside the arteries")
        table = mn.table_node_from_dataframe(scene, scores, f"{name} calcium scores")
        for node in (vol, short, full, calc, table):
            mn.set_provenance(node, provenance)
        paths = []
        for node, fname in ((short, "arteries.seg.nrrd"), (full, "arteries_full.seg.nrrd"),
                            (calc, "calcifications.seg.nrrd")):
            _write_segmentation(node, out / fname)
            paths.append(out / fname)
        mrb = out / "scene.mrb"
        if not scene.WriteToMRB(str(mrb)):
            raise OSError(f"could not write {mrb}")
        paths.append(mrb)
        return paths
    finally:
        h.close()
