"""MRML adapters: SimpleITK images and pandas tables <-> Slicer nodes.

This is the only layer of CalciumScoringLib that imports ``slicer``, and only the
MRML/logic classes and ``slicer.util`` array helpers that the ``slicer-core``
wheel provides, so it runs on a real scene inside and outside Slicer.

Geometry: SimpleITK images are LPS, MRML nodes are RAS; conversion flips the
first two axes of origin and direction.  Voxel arrays are (k, j, i) in both.
"""

import json
from datetime import datetime, timezone

import numpy as np
import SimpleITK as sitk
import slicer

from .terms import GROUP_LABELS, SegmentTerm

PROVENANCE_ATTRIBUTE = "VascularCalcium.Provenance"
#: segment tag naming the artery group a segment belongs to (aorta, iliac, mesenteric, renal)
GROUP_TAG = "VascularCalcium.Group"
_LPS_RAS = np.diag([-1.0, -1.0, 1.0])


def _ras_geometry(image):
    D = np.array(image.GetDirection(), float).reshape(3, 3)
    return _LPS_RAS @ np.array(image.GetOrigin(), float), _LPS_RAS @ D


def set_node_geometry(node, image):
    """Copy spacing, origin and direction of a SimpleITK ``image`` to a volume node."""
    origin, D = _ras_geometry(image)
    node.SetSpacing(*image.GetSpacing())
    node.SetOrigin(*origin)
    import vtk

    m = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, D[r, c])
    node.SetIJKToRASDirectionMatrix(m)


def image_geometry_from_node(node):
    """``(spacing, origin, direction)`` of a volume node in LPS (SimpleITK convention)."""
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(m)
    D = _LPS_RAS @ np.array([[m.GetElement(r, c) for c in range(3)] for r in range(3)])
    origin = _LPS_RAS @ np.array(node.GetOrigin())
    return tuple(node.GetSpacing()), tuple(origin), tuple(D.ravel())


def volume_node_from_image(scene, image, name, labelmap=False):
    """Add a new scalar (or label map) volume node holding ``image``; returns the node."""
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, scene.GenerateUniqueName(name))
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    set_node_geometry(node, image)
    node.CreateDefaultDisplayNodes()
    return node


def image_from_volume_node(node):
    """A SimpleITK image (LPS) with the voxels and geometry of a volume node (a copy)."""
    if node is None or node.GetImageData() is None:
        raise ValueError("the volume node has no image data; load a CT volume first")
    img = sitk.GetImageFromArray(np.array(slicer.util.arrayFromVolume(node)))
    spacing, origin, direction = image_geometry_from_node(node)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def segmentation_node_from_labelmap(scene, labelmap, segments, reference_node, name):
    """Add a segmentation node with one segment per ``(label value, SegmentTerm)``.

    ``labelmap`` is a SimpleITK label image on the grid of ``reference_node``.
    Segments are created even when empty, so every expected structure is listed.
    """
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    arr = sitk.GetArrayFromImage(labelmap)
    for value, t in segments:
        add_segment(node, t, arr == value, reference_node)
    return node


def add_segment(node, term: SegmentTerm, mask, reference_node, segment_id=None, group=None):
    """Add (or replace) a segment with standard name, colour and terminology; returns its id.

    ``group`` (default: the term's key when it names a group) is stored as a segment tag.
    """
    seg = node.GetSegmentation()
    sid = segment_id or term.key
    if seg.GetSegment(sid) is not None:
        seg.RemoveSegment(sid)
    seg.AddEmptySegment(sid, term.name, list(term.color))
    seg.GetSegment(sid).SetTerminology(term.terminology)
    group = group or (term.key if term.key in GROUP_LABELS else None)
    if group:
        seg.GetSegment(sid).SetTag(GROUP_TAG, group)
    if np.any(mask):
        slicer.util.updateSegmentBinaryLabelmapFromArray(
            np.asarray(mask, np.uint8), node, sid, reference_node)
    return sid


def segment_tag(segment, key):
    """The value of a segment tag, or ``None``."""
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(key, value) else None


def segment_array(node, segment_id, reference_node):
    """Binary (k, j, i) uint8 array of a segment on the grid of ``reference_node``."""
    if node.GetSegmentation().GetSegment(segment_id) is None:
        raise KeyError(f"segment {segment_id!r} not found in {node.GetName()}")
    return np.array(slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, reference_node))


def labelmap_from_segmentation(node, mapping, reference_node):
    """A SimpleITK label image: ``mapping`` is segment id -> label value.

    Overlaps are resolved in ``mapping`` order (later wins).
    """
    ref = image_from_volume_node(reference_node)
    out = np.zeros(sitk.GetArrayViewFromImage(ref).shape, np.uint8)
    for sid, value in mapping.items():
        out[segment_array(node, sid, reference_node) > 0] = value
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(ref)
    return img


def table_node_from_dataframe(scene, df, name, node=None):
    """Write a pandas DataFrame to a (new or given) table node; columns keep their names."""
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    table = node.GetTable()
    node.RemoveAllColumns()
    import vtk

    for col in df.columns:
        values = df[col].tolist()
        if df[col].dtype.kind in "iub":
            arr = vtk.vtkIntArray()
        elif df[col].dtype.kind == "f":
            arr = vtk.vtkDoubleArray()
        else:
            arr = vtk.vtkStringArray()
            values = ["" if v is None else str(v) for v in values]
        arr.SetName(str(col))
        arr.SetNumberOfValues(len(values))
        for i, v in enumerate(values):
            arr.SetValue(i, v if not isinstance(v, (np.generic,)) else v.item())
        table.AddColumn(arr)
    node.Modified()
    return node


def dataframe_from_table_node(node):
    """A pandas DataFrame of a table node (numbers stay numbers)."""
    return slicer.util.dataframeFromTable(node)


CONTENT_ATTRIBUTE = "VascularCalcium.ContentDigest"


def content_digest(node, reference_node):
    """sha256 of a segmentation's segment ids and voxels on ``reference_node``'s grid."""
    import hashlib

    h = hashlib.sha256()
    seg = node.GetSegmentation()
    for i in range(seg.GetNumberOfSegments()):
        sid = seg.GetNthSegmentID(i)
        h.update(sid.encode())
        h.update(np.packbits(segment_array(node, sid, reference_node) > 0).tobytes())
    return h.hexdigest()


def mark_unedited(node, reference_node):
    """Remember the content the pipeline wrote, to detect later edits."""
    node.SetAttribute(CONTENT_ATTRIBUTE, content_digest(node, reference_node))


def is_edited(node, reference_node):
    """True when a segmentation the pipeline wrote was changed since (e.g. in Segment Editor)."""
    stored = node.GetAttribute(CONTENT_ATTRIBUTE)
    return bool(stored) and stored != content_digest(node, reference_node)


def remove_node(node):
    """Remove a node with its display and storage nodes (e.g. to undo a failed run)."""
    scene = node.GetScene()
    if scene is None:
        return
    extra = []
    if hasattr(node, "GetNumberOfDisplayNodes"):
        extra += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    if hasattr(node, "GetStorageNode"):
        extra.append(node.GetStorageNode())
    for n in [node] + [e for e in extra if e is not None]:
        scene.RemoveNode(n)


def set_provenance(node, provenance):
    """Store a JSON provenance record (model, version, checksum, parameters, date) on a node."""
    record = dict(provenance)
    record.setdefault("date", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    node.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps(record, sort_keys=True, default=str))
    return record


def get_provenance(node):
    """The provenance record stored by :func:`set_provenance` (empty dict if none)."""
    text = node.GetAttribute(PROVENANCE_ATTRIBUTE)
    return json.loads(text) if text else {}
