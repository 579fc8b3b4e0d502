"""The CalciumScoring pipeline on scene nodes (MRML adapter layer).

artery groups (a model from the registry, or an existing segmentation) ->
calcification (a threshold method, a model, or an existing segmentation) ->
shortening (network calcium the groups network just misses is attached to the
shortened arteries) -> scores, table and chart; plus re-scoring of edited
segmentations, per-case validation and a synthetic phantom loader for demos.
``prepare`` (reads the scene) / ``compute`` (images only, safe in a background
thread) / ``publish`` (writes the scene) split every run, so the Slicer module stays
responsive; the Python console, the CLI and the tests call the same object.
"""

import json
from dataclasses import dataclass, field

import pandas as pd
import SimpleITK as sitk

from ..phantoms.generator import make_phantom
from ..scoring.scores import attach_to_shortened
from . import nodes as mn
from . import terms as st
from .runs import RUN_NEW, last_run, save_run

#: score-table attributes: the QC flags (JSON list) and whether the scores are valid ("1"/"0")
QC_ATTRIBUTE = "VascularCalcium.QC"
VALID_ATTRIBUTE = "VascularCalcium.ScoresValid"


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
    qc: list = field(default_factory=list)  # flags {"code", "message"}, as in scores.json
    scores_valid: bool = True  # False: a measured group's scores are not valid (see qc.states)
    states: dict = field(default_factory=dict)  # group -> (state, reason), qc.states

    @property
    def review_message(self):
        """What the user must check before trusting the scores ("" when nothing)."""
        return next((f["message"] for f in self.qc if f["code"] == "arteries_implausible"), "")

    @property
    def status_message(self):
        """The run's warnings and its QC flags other than the plausibility check (shown by
        :attr:`review_message`), in one line for the module's status ("" when none)."""
        gone = [f"{g} {s}" for g, (s, _) in self.states.items() if s != "measured"]
        return "; ".join((["groups: " + ", ".join(gone)] if gone else []) + list(self.warnings)
                         + [f"{f['code']}: {f['message']}" for f in self.qc
                            if f["code"] != "arteries_implausible"])


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


@dataclass
class Job:
    """What a run needs from the scene, read on the main thread by ``prepare``."""

    name: str
    ct: object
    groups: object = None  # artery groups from a segmentation (label map)
    groups_model: str = None
    segments: object = None  # ArteryShorteningLib.mrml_logic.GroupSegments of that segmentation
    arteries_source: dict = None
    calcium: object = None  # calcification from a segmentation
    calcium_spec: str = None  # threshold method or model name
    calcium_node_name: str = None
    source_node: object = None  # the artery segmentation node given by the user
    calcium_node: object = None  # the calcification segmentation node given by the user
    device: str = "cpu"
    params: dict = field(default_factory=dict)


@dataclass
class Computed:
    """Results of ``compute`` (images and tables only, no MRML)."""

    groups_full: object = None
    arteries_source: dict = None
    shortening: object = None
    calcium: object = None
    calcium_source: dict = None
    scores: object = None
    plausibility: object = None  # qc.plausibility.Plausibility of groups_full
    qc: list = field(default_factory=list)
    states: dict = field(default_factory=dict)  # group -> (state, reason), qc.states
    invalidated_by: list = field(default_factory=list)  # flag codes making scores not valid


class EditedError(RuntimeError):
    """An output the user edited would be overwritten; ask before passing overwrite_edited=True."""


class CalciumScoringPipeline:
    """Runs the stages on the nodes of one scene (stateless: one instance serves many runs)."""

    def load_phantom(self, scene, seed=0, spacing=(0.8, 0.8, 1.0), **options):
        """Add a phantom CTA volume and its artery-group segmentation to ``scene``."""
        ph = make_phantom(seed, spacing=spacing, **options)
        name = f"Phantom CTA {seed}"
        volume = mn.volume_node_from_image(scene, ph.ct, name)
        groups = mn.segmentation_node_from_labelmap(scene, ph.groups, st.group_segments(),
                                                    volume, f"{name} artery groups")
        prov = {"source": "CalciumScoringLib.phantoms.generator.make_phantom", "seed": seed,
                "spacing": list(spacing), "options": {k: repr(v) for k, v in options.items()}}
        mn.set_provenance(volume, prov)
        mn.set_provenance(groups, prov)
        return volume, groups

    def process(self, volume, artery_groups, calcium="lumen_relative", progress=None, cancel=None,
                shortened=None, table=None, overwrite_edited=False, mapping=None, device="cpu",
                **params):
        """Segment (if a model is given), shorten, find calcification, score.

        ``artery_groups`` is a segmentation node or a model name/folder (see
        :mod:`..segmentation.models`), whose output becomes "<volume> arteries".  ``calcium`` is a
        threshold method name (see :mod:`..scoring.thresholds`), a model name (label 2 =
        calcification) or a segmentation node whose segments are all calcification
        (used as it is, no copy).  ``params`` go to the shortening
        (``stump_length_mm``, ``aorta_margin_mm``, ...).  ``cancel()`` is checked between
        stages and network windows; a cancelled or failed run leaves the scene as it
        was.  ``shortened`` and ``table`` are existing nodes to write into (re-running
        into previous outputs); a ``shortened`` segmentation edited since the pipeline
        wrote it raises :class:`EditedError` unless ``overwrite_edited``.

        The three steps are also available separately, so the Slicer module runs
        :meth:`compute` in a background thread: :meth:`prepare` (reads the scene),
        :meth:`compute` (no MRML), :meth:`publish` (writes the scene).
        """
        job = self.prepare(volume, artery_groups, calcium, mapping=mapping, shortened=shortened,
                           overwrite_edited=overwrite_edited, device=device, **params)
        computed = self.compute(job, progress=progress, cancel=cancel)
        result = self.publish(volume, job, computed, shortened=shortened, table=table)
        if progress:
            progress(1.0, "done")
        return result

    def prepare(self, volume, artery_groups, calcium="lumen_relative", mapping=None, shortened=None,
                overwrite_edited=False, device="cpu", **params):
        """Read everything the computation needs from the scene (main thread): a :class:`Job`."""
        from ..scoring import thresholds
        from .groups import read_group_segments

        if volume is None or artery_groups is None:
            raise ValueError("select a CTA volume and an artery source (segmentation or model)")
        if shortened is not None and not overwrite_edited and mn.is_edited(shortened, volume):
            raise EditedError(f"'{shortened.GetName()}' was edited since it was computed; "
                              "re-running would overwrite the edits. Create new outputs, or "
                              "confirm overwriting (overwrite_edited=True).")
        job = Job(volume.GetName(), mn.image_from_volume_node(volume), device=device,
                  params=dict(params))
        if isinstance(artery_groups, str):
            job.groups_model = artery_groups
        else:
            job.segments = read_group_segments(artery_groups, volume, mapping)
            job.groups = job.segments.image
            job.arteries_source = {"segmentation": artery_groups.GetName()}
            job.source_node = artery_groups
        if isinstance(calcium, str):
            if calcium == "idealised":
                raise ValueError("the idealised threshold needs a reference: use validation")
            if calcium not in thresholds.METHODS:
                from ..segmentation.models import find_model

                try:
                    find_model(calcium)
                except Exception as exc:
                    raise ValueError(f"unknown calcification method or model {calcium!r}: "
                                     f"{exc}") from exc
            job.calcium_spec = calcium
        else:
            seg = calcium.GetSegmentation()
            ids = {seg.GetNthSegmentID(i): 1 for i in range(seg.GetNumberOfSegments())}
            job.calcium = sitk.Cast(mn.labelmap_from_segmentation(calcium, ids, volume),
                                    sitk.sitkUInt8)
            job.calcium_node_name = calcium.GetName()
            job.calcium_node = calcium
        return job

    def compute(self, job, progress=None, cancel=None):
        """Networks, shortening, calcification and scores on images only (any thread).

        The work runs on the CT in LPS voxel order (:func:`..imagecheck.to_lps`, no
        interpolation); the masks are carried back onto the volume's own grid at the end,
        so the answer does not depend on the volume's voxel order."""
        from ArteryShorteningLib import shorten_arteries

        from ..errors import Cancelled
        from ..imagecheck import onto, to_lps
        from ..qc.checks import aorta_cut_defined, calcium_network_coverage, check_ct, clean_ct
        from ..scoring import thresholds
        from ..scoring.scores import score
        from ..segmentation.engine import segment
        from ..segmentation.models import find_model, provenance

        report = progress or (lambda f, s: None)

        def check():
            if cancel is not None and cancel():
                raise Cancelled("cancelled by the user; the scene is unchanged")

        check()
        c = Computed(qc=check_ct(job.ct))  # refuses what cannot be processed, as the CLI does
        ct = to_lps(clean_ct(job.ct))
        if job.groups_model is not None:
            info = find_model(job.groups_model)
            c.groups_full = segment(ct, info, device=job.device,
                                    progress=lambda f, s: report(0.3 * f, s), cancel=cancel)
            c.arteries_source = provenance(info)
        else:
            c.groups_full, c.arteries_source = onto(job.groups, ct), job.arteries_source
        check()
        report(0.3, "calcification")
        if job.calcium is not None:
            c.calcium = onto(job.calcium, ct)
            c.calcium_source = {"segmentation": job.calcium_node_name}
        elif job.calcium_spec in thresholds.METHODS:
            c.calcium = thresholds.METHODS[job.calcium_spec](ct, c.groups_full > 0)
            c.calcium_source = dict({"method": job.calcium_spec},
                                    **thresholds.threshold_record(c.calcium))
        else:
            info = find_model(job.calcium_spec)
            lab = segment(ct, info, device=job.device,
                          progress=lambda f, s: report(0.3 + 0.2 * f, s), cancel=cancel,
                          roi=c.groups_full > 0)
            c.calcium = sitk.Cast(lab == 2, sitk.sitkUInt8)
            c.calcium_source = {"model": info.name, "version": info.version,
                                "sha256": info.card.get("sha256"),
                                "artery_coverage": round(calcium_network_coverage(lab, c.groups_full), 4)}
        if job.calcium is None:  # found here, not the user's: metal is not calcium
            c.calcium, metal = thresholds.without_metal(ct, c.calcium)
            c.calcium_source.update(metal)
        check()
        report(0.5, "shortening arteries")
        missing = []
        if job.segments is not None:  # groups the user's segmentation does not hold at all
            held = set(job.segments.groups.values())
            missing = [g for g in st.GROUP_LABELS if g not in held]
        c.shortening = shorten_arteries(c.groups_full, cut_aorta=aorta_cut_defined(missing),
                                        **job.params)
        if job.groups_model is not None and "model" in c.calcium_source:  # 2 mm edge, wall
            c.shortening.labelmap, c.groups_full, mm3 = attach_to_shortened(
                c.shortening.labelmap, c.groups_full, c.calcium)
            c.calcium_source["wall_calcium_attached_mm3"] = mm3
        check()
        report(0.7, "scoring")
        c.scores = score(ct, c.shortening.labelmap, c.calcium, groups_full=c.groups_full)
        self._quality(job, c, ct, missing)
        c.groups_full, c.calcium = onto(c.groups_full, job.ct), onto(c.calcium, job.ct)
        c.shortening.labelmap = onto(c.shortening.labelmap, job.ct)
        check()
        report(0.9, "writing results")
        return c

    @staticmethod
    def _quality(job, c, ct, missing):
        """The QC flags, group states and validity of a result, as the CLI gives them
        (:func:`..qc.states.assess`); the score table gains ``state``, ``scores_valid``
        and ``covers``, and the scores of groups not found, not in view or not labelled
        become NaN (never 0)."""
        from ..qc.states import assess

        name = (job.arteries_source or {}).get("segmentation", "")
        c.qc, c.states, c.invalidated_by, c.scores.table, c.plausibility = assess(
            ct, c.groups_full, c.calcium, c.calcium_source, c.scores.table,
            c.shortening.branches, c.shortening.parameters["stump_length_mm"], missing,
            f"the segmentation '{name}'", c.qc,
            user_masks=job.groups is not None and job.calcium is not None)

    def publish(self, volume, job, c, shortened=None, table=None):
        """Create (or update) the output nodes of a computed run (main thread)."""
        from .groups import write_group_segments

        scene, name = volume.GetScene(), job.name
        created = []
        try:
            arteries = None
            if job.groups_model is not None:
                arteries = mn.segmentation_node_from_labelmap(
                    scene, c.groups_full, st.group_segments(), volume, f"{name} arteries")
                created.append(arteries)
                mn.set_provenance(arteries, dict(c.arteries_source, input=name))
            out = shortened
            if out is None:
                out = scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                              scene.GenerateUniqueName(f"{name} arteries shortened"))
                created.append(out)
                out.CreateDefaultDisplayNodes()
                out.SetReferenceImageGeometryParameterFromVolumeNode(volume)
            short_arr = sitk.GetArrayViewFromImage(c.shortening.labelmap)
            if job.segments is not None:
                write_group_segments(out, job.segments, short_arr, volume)
            else:
                for value, term in st.group_segments():
                    mn.add_segment(out, term, short_arr == value, volume)
            branches = c.shortening.branches.copy()
            branches["takeoff_lps"] = branches["takeoff_lps"].astype(str)
            previous = last_run(volume) if table is not None else None
            branch_table = previous.get("report") if previous else None
            if branch_table is None:
                branch_table = mn.table_node_from_dataframe(scene, branches,
                                                            f"{name} shortening report")
                created.append(branch_table)
            else:  # re-scoring: the previous report is updated too
                mn.table_node_from_dataframe(scene, branches, branch_table.GetName(),
                                             node=branch_table)
            calc_arr = sitk.GetArrayViewFromImage(c.calcium) > 0
            full_arr = sitk.GetArrayViewFromImage(c.groups_full)
            cnode = None
            if job.calcium is None:
                cnode = self._calcification_node(scene, volume, name, calc_arr, full_arr)
                created.append(cnode)
            if table is None:
                table = mn.table_node_from_dataframe(scene, c.scores.table, f"{name} calcium scores")
                created.append(table)
                created += burden_plot(scene, table, f"{name} burden")
            else:  # re-scoring: the same table (and the chart reading it) is updated
                mn.table_node_from_dataframe(scene, c.scores.table, table.GetName(), node=table)
            from ..qc.states import all_valid

            valid = all_valid(c.scores.table)
            prov = {"pipeline": "CalciumScoring", "arteries": c.arteries_source,
                    "calcification": c.calcium_source, "shortening": c.shortening.parameters,
                    "scoring": c.scores.parameters, "input": name,
                    "warnings": c.shortening.warnings + c.scores.warnings,
                    "qc": c.qc, "scores_valid": valid, "invalidated_by": c.invalidated_by,
                    "states": {g: {"state": a, "reason": b} for g, (a, b) in c.states.items()},
                    "plausibility": c.plausibility.as_dict() if c.plausibility else None}
            table.SetAttribute(QC_ATTRIBUTE, json.dumps(c.qc))
            table.SetAttribute(VALID_ATTRIBUTE, "1" if valid else "0")
            for node in (out, table, branch_table) + ((cnode,) if cnode is not None else ()):
                mn.set_provenance(node, prov)
            for node in (out,) + ((cnode,) if cnode is not None else ()):
                mn.mark_unedited(node, volume)
            record = save_run(volume, {"arteries": arteries or job.source_node, "shortened": out,
                                       "calcifications": cnode or job.calcium_node,
                                       "table": table, "report": branch_table},
                              dict(job.params, calcium=c.calcium_source))
            if record not in created and record.GetAttribute(RUN_NEW) == "1":
                created.append(record)
        except BaseException:
            for node in created:  # a failed run leaves the scene as it was
                mn.remove_node(node)
            raise
        return PipelineResult(out, cnode, table, branch_table, c.scores.table,
                              list(c.shortening.warnings) + list(c.scores.warnings), arteries,
                              list(c.qc), valid, dict(c.states))

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

        from ..validation.evaluate import evaluate_case
        from .groups import segment_groups

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
