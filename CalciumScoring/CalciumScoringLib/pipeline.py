"""The CalciumScoring pipeline on scene nodes (MRML adapter layer).

Today: artery groups (an existing segmentation) -> shortening -> calcification
(a threshold method, or an existing calcification segmentation) -> scores,
plus a synthetic phantom loader for demos and tests.  The network stage plugs in
here when it lands, so the Slicer module, the console and the CLI keep calling
one object.
"""

from dataclasses import dataclass, field

import pandas as pd

from . import mrml_nodes as mn
from . import segment_terms as st
from .phantoms import make_phantom


@dataclass
class PipelineResult:
    """Nodes created by one run; ``dataframe`` is the score table as pandas."""

    shortened: object
    calcifications: object
    table: object
    branch_table: object
    dataframe: pd.DataFrame
    warnings: list = field(default_factory=list)
    arteries: object = None  # the artery segmentation a model created (None for user input)


def burden_plot(scene, table, name):
    """A bar chart of the ``burden`` column of the score ``table`` (labelled by region).

    The series reads the score table itself, so re-scoring into the same table updates
    the chart.  Returns the created nodes (series, chart).
    """
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(name))
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName("")  # bars at the row index
    series.SetYColumnName("burden")
    series.SetLabelColumnName("region")
    series.SetPlotType(series.PlotTypeBar)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(f"{name} chart"))
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle("Calcification burden per region")
    chart.SetXAxisTitle("region (row of the score table)")
    chart.SetYAxisTitle("burden (calcified / artery volume)")
    return [series, chart]


class EditedError(RuntimeError):
    """An output the user edited would be overwritten; ask before passing overwrite_edited=True."""


class CalciumScoringPipeline:
    """Runs the stages on nodes of one scene; collaborators are injectable for tests."""

    def __init__(self, shortening_logic=None):
        if shortening_logic is None:
            from ArteryShorteningLib.mrml_logic import ArteryShorteningMRMLLogic

            shortening_logic = ArteryShorteningMRMLLogic()
        self.shortening = shortening_logic

    def load_phantom(self, scene, seed=0, spacing=(0.8, 0.8, 1.0), **options):
        """Add a phantom CTA volume and its artery-group segmentation to ``scene``."""
        ph = make_phantom(seed, spacing=spacing, **options)
        name = f"Phantom CTA {seed}"
        volume = mn.volume_node_from_image(scene, ph.ct, name)
        groups = mn.segmentation_node_from_labelmap(scene, ph.groups, st.group_segments(),
                                                    volume, f"{name} artery groups")
        prov = {"source": "CalciumScoringLib.phantoms.make_phantom", "seed": seed,
                "spacing": list(spacing), "options": {k: repr(v) for k, v in options.items()}}
        mn.set_provenance(volume, prov)
        mn.set_provenance(groups, prov)
        return volume, groups

    def process(self, volume, artery_groups, calcium="adaptive", progress=None, cancel=None,
                shortened=None, table=None, overwrite_edited=False, **params):
        """Shorten, find calcification, score; returns a :class:`PipelineResult`.

        ``artery_groups`` is a segmentation node or a model name/folder (see
        :mod:`.models`), whose output becomes "<volume> arteries".  ``calcium`` is a
        threshold method name (see :mod:`.thresholds`), a model name (label 2 =
        calcification) or a segmentation node whose segments are all calcification.
        ``params`` go to the shortening (``stump_length_mm``, ``aorta_margin_mm``, ...).
        ``cancel()`` is checked between stages (and between network windows); a
        cancelled or failed run removes every node it created.  ``shortened`` and
        ``table`` are existing nodes to write the shortened arteries and scores into
        (re-running into previous outputs); a ``shortened`` segmentation edited since
        the pipeline wrote it raises :class:`EditedError` unless ``overwrite_edited``.  A
        calcification segmentation given as ``calcium`` is used as it is (no copy).
        """
        import SimpleITK as sitk

        from ArteryShorteningLib.mrml_logic import segment_groups

        from . import thresholds
        from .scoring import score

        if volume is None or artery_groups is None:
            raise ValueError("select a CTA volume and an artery-group segmentation")
        ct = mn.image_from_volume_node(volume)
        name = volume.GetName()
        scene = volume.GetScene()
        created = []
        report = progress or (lambda f, s: None)

        def check():
            if cancel is not None and cancel():
                from .inference import Cancelled

                raise Cancelled("cancelled by the user; the scene is unchanged")

        if shortened is not None and not overwrite_edited and mn.is_edited(shortened, volume):
            raise EditedError(f"'{shortened.GetName()}' was edited since it was computed; "
                              "re-running would overwrite the edits. Create new outputs, or "
                              "confirm overwriting (overwrite_edited=True).")
        try:
            check()
            if isinstance(artery_groups, str):
                artery_groups, info = self._segment_arteries(volume, ct, artery_groups, report, cancel)
                created.append(artery_groups)
            check()
            report(0.3, "shortening arteries")
            mapping = params.pop("mapping", None)
            out, branch_table, res = self.shortening.process(
                artery_groups, output_node=shortened, reference_volume=volume, mapping=mapping,
                **params)
            created += [branch_table] + ([out] if shortened is None else [])
            if shortened is None:
                out.SetName(f"{name} arteries shortened")
            branch_table.SetName(f"{name} shortening report")
            to_value = {sid: st.GROUP_LABELS[g]
                        for sid, g in segment_groups(artery_groups, mapping).items()}
            full = mn.labelmap_from_segmentation(artery_groups, to_value, volume)
            short = mn.labelmap_from_segmentation(out, to_value, volume)
            check()
            report(0.5, "calcification")
            if isinstance(calcium, str) and calcium in thresholds.METHODS:
                if calcium == "idealised":
                    raise ValueError("the idealised threshold needs a reference: use validation")
                calc = thresholds.METHODS[calcium](ct, full > 0)
                source = {"method": calcium, "threshold_hu": calc.GetMetaData("threshold_hu")}
            elif isinstance(calcium, str):
                from .inference import find_model, segment

                try:
                    info = find_model(calcium)
                except Exception as exc:
                    raise ValueError(f"unknown calcification method or model {calcium!r}: "
                                     f"{exc}") from exc
                lab = segment(ct, info, progress=lambda f, s: report(0.5 + 0.15 * f, s),
                              cancel=cancel)
                calc = sitk.Cast(lab == 2, sitk.sitkUInt8)
                source = {"model": info.name, "version": info.version,
                          "sha256": info.card.get("sha256")}
            else:
                seg = calcium.GetSegmentation()
                ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
                calc = sitk.Cast(mn.labelmap_from_segmentation(calcium, {i: 1 for i in ids}, volume),
                                 sitk.sitkUInt8)
                source = {"segmentation": calcium.GetName()}
            check()
            report(0.7, "scoring")
            result = score(ct, short, calc, groups_full=full)
            calc_arr = sitk.GetArrayViewFromImage(calc) > 0
            full_arr = sitk.GetArrayViewFromImage(full)
            if not isinstance(calcium, str):
                cnode = calcium
            else:
                cnode = self._calcification_node(scene, volume, name, calc_arr, full_arr)
                created.append(cnode)
            if table is None:
                table = mn.table_node_from_dataframe(scene, result.table, f"{name} calcium scores")
                created.append(table)
                created += burden_plot(scene, table, f"{name} burden")
            else:  # re-scoring: the same table (and the chart reading it) is updated
                mn.table_node_from_dataframe(scene, result.table, table.GetName(), node=table)
            prov = {"pipeline": "CalciumScoring", "calcification": source,
                    "shortening": res.parameters, "scoring": result.parameters,
                    "warnings": res.warnings + result.warnings, "input": name,
                    "arteries": artery_groups.GetName()}
            for node in (out, table) + ((cnode,) if isinstance(calcium, str) else ()):
                mn.set_provenance(node, prov)
            for node in (out,) + ((cnode,) if isinstance(calcium, str) else ()):
                mn.mark_unedited(node, volume)
        except BaseException:
            for node in created:  # a failed run leaves the scene as it was
                mn.remove_node(node)
            raise
        report(1.0, "done")
        return PipelineResult(out, cnode, table, branch_table, result.table,
                              list(res.warnings) + list(result.warnings),
                              artery_groups if artery_groups in created else None)

    @staticmethod
    def _calcification_node(scene, volume, name, calc_arr, full_arr):
        """"<volume> calcifications": one segment per group plus calcification elsewhere."""
        cnode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                        scene.GenerateUniqueName(f"{name} calcifications"))
        cnode.CreateDefaultDisplayNodes()
        cnode.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        term = st.term("calcification")
        for g, v in st.GROUP_LABELS.items():
            sid = mn.add_segment(cnode, term, calc_arr & (full_arr == v), volume,
                                 segment_id=f"{g}_calcification", group=g)
            cnode.GetSegmentation().GetSegment(sid).SetName(f"{g} calcification")
        mn.add_segment(cnode, term, calc_arr & (full_arr == 0), volume,
                       segment_id="other_calcification")
        cnode.GetSegmentation().GetSegment("other_calcification").SetName(
            "calcification outside the arteries")
        return cnode

    def _segment_arteries(self, volume, ct, model, report, cancel):
        """Run an artery-group model; a new "<volume> arteries" segmentation node."""
        from .inference import find_model, segment

        info = find_model(model)
        lab = segment(ct, info, progress=lambda f, s: report(0.3 * f, s), cancel=cancel)
        node = mn.segmentation_node_from_labelmap(volume.GetScene(), lab, st.group_segments(),
                                                  volume, f"{volume.GetName()} arteries")
        mn.set_provenance(node, {"model": info.name, "version": info.version,
                                 "sha256": info.card.get("sha256"), "input": volume.GetName()})
        return node, info

    def recompute(self, volume, artery_groups, calcifications, table=None, shortened=None,
                  overwrite_edited=False, **params):
        """Re-run shortening and scoring from (edited) segmentations, no network.

        Updates ``table`` and ``shortened`` in place when given (else creates them);
        returns the :class:`PipelineResult`.
        """
        return self.process(volume, artery_groups, calcium=calcifications, shortened=shortened,
                            table=table, overwrite_edited=overwrite_edited, **params)

    def validate(self, volume, reference_groups, reference_calcium, automated_groups,
                 automated_calcium, shortening=None):
        """Per-group Dice and score differences of one case against a reference, as a table node.

        Segmentations are read as in :meth:`process` (groups by name/terminology/tag;
        every segment of a calcification segmentation is calcification).
        """
        import SimpleITK as sitk

        from ArteryShorteningLib.mrml_logic import segment_groups

        from .validation import evaluate_case

        def groups_image(node):
            to_value = {sid: st.GROUP_LABELS[g] for sid, g in segment_groups(node).items()}
            return sitk.Cast(mn.labelmap_from_segmentation(node, to_value, volume), sitk.sitkUInt8)

        def calcium_image(node):
            seg = node.GetSegmentation()
            ids = {seg.GetNthSegmentID(i): 1 for i in range(seg.GetNumberOfSegments())}
            return sitk.Cast(mn.labelmap_from_segmentation(node, ids, volume), sitk.sitkUInt8)

        case = {"case_id": volume.GetName(), "ct": mn.image_from_volume_node(volume),
                "ref_groups": groups_image(reference_groups),
                "ref_calcium": calcium_image(reference_calcium),
                "auto_groups": groups_image(automated_groups),
                "auto_calcium": calcium_image(automated_calcium)}
        seg_rows, score_rows, notes = evaluate_case(case, ("automated",), shortening)
        seg = pd.DataFrame(seg_rows)
        dice = seg[seg.structure == "arteries (shortened)"].set_index("region").dice
        calc_dice = seg[seg.structure != "arteries (shortened)"].dice
        rows = []
        for r in score_rows:
            row = {"region": r["region"], "artery_dice": float(dice.get(r["region"], float("nan")))}
            for s in ("burden", "calcium_volume_mm3", "cluster_count", "cluster_mean_mm3"):
                row[f"{s}_reference"] = r[f"{s}_ref"]
                row[f"{s}_automated"] = r[f"{s}_test"]
                row[f"{s}_difference"] = r[f"{s}_test"] - r[f"{s}_ref"]
            rows.append(row)
        df = pd.DataFrame(rows)
        df["calcification_dice"] = float(calc_dice.iloc[0]) if len(calc_dice) else float("nan")
        table = mn.table_node_from_dataframe(volume.GetScene(), df.fillna(-1.0),
                                             f"{volume.GetName()} validation")
        mn.set_provenance(table, {"validation": "per-case", "notes": notes,
                                  "shortening": shortening or {},
                                  "reference": [reference_groups.GetName(), reference_calcium.GetName()],
                                  "automated": [automated_groups.GetName(), automated_calcium.GetName()],
                                  "missing_values": "-1 where a metric is undefined"})
        return table, df
