"""The pipeline outside Slicer's process: our command line on the job's files (MRML adapter).

Slicer's Python runs without thread support, so long work inside its process freezes the
application.  :class:`ExternalRun` writes the job's inputs (the CT, and the user's artery
and calcification segmentations as label maps) to a work folder, starts
``python -m CalciumScoringLib.cohort.cli run ... --progress`` as a separate process
(Slicer's own ``PythonSlicer`` inside Slicer) in a process group of its own, and is *polled* (no thread): each
:meth:`ExternalRun.poll` reads the progress lines the process wrote to its log since the
last call.  :meth:`ExternalRun.cancel` kills the process and its children; the scene is not
touched until :meth:`ExternalRun.load` reads the finished outputs into new nodes through
:meth:`.pipeline.CalciumScoringPipeline.publish`, exactly as an in-process run creates them.

>>> run = ExternalRun.start(volume, "artery-groups", "lumen_relative")  # doctest: +SKIP
>>> while run.poll() == "running": ...                                # a QTimer in Slicer
>>> result = run.load(volume)                                          # doctest: +SKIP
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import SimpleITK as sitk

from . import nodes as mn

PROGRESS = "PROGRESS "  # a progress line of the command line: "PROGRESS <fraction> <stage>"


def python_executable():
    """Slicer's ``PythonSlicer`` when there is one (inside Slicer), else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def _library_path():
    """The folders that hold CalciumScoringLib and ArteryShorteningLib, for PYTHONPATH."""
    import ArteryShorteningLib

    import CalciumScoringLib

    return [str(Path(m.__file__).resolve().parents[1]) for m in (CalciumScoringLib, ArteryShorteningLib)]


class ExternalRun:
    """One pipeline run in a separate process; see the module docstring."""

    def __init__(self, folder, command, process, job):
        self.folder, self.command, self.process, self.job = Path(folder), command, process, job
        self._read = 0
        self.progress = (0.0, "starting")
        self.state = "running"

    @property
    def log_path(self):
        return self.folder / "log.txt"

    @classmethod
    def start(cls, volume, artery_source, calcium="lumen_relative", params=None, device="cpu",
              mapping=None, python=None, folder=None, name="case"):
        """Write the inputs and start the command line.

        ``artery_source``: an artery-group segmentation node or a model name; ``calcium``:
        a threshold method, a model name or a calcification segmentation node; ``params``:
        ``stump_length_mm``, ``aorta_margin_mm``.  Returns the running :class:`ExternalRun`
        (its work folder is a new temporary folder unless ``folder`` is given)."""
        from ..scoring import thresholds
        from .groups import read_group_segments

        params = dict(params or {})
        work = Path(folder or tempfile.mkdtemp(prefix="vascular-calcium-"))
        work.mkdir(parents=True, exist_ok=True)
        ct = work / f"{name}.nrrd"
        sitk.WriteImage(mn.image_from_volume_node(volume), str(ct), True)
        cmd = [python or python_executable(), "-u", "-m", "CalciumScoringLib.cohort.cli", "run",
               str(ct), str(work / "out"), "--progress", "--device", device,
               "--stump-length", str(params.get("stump_length_mm", 25.0)),
               "--aorta-margin", str(params.get("aorta_margin_mm", 10.0))]
        job = SimpleNamespace(name=volume.GetName(), groups_model=None, segments=None,
                              source_node=None, calcium=None, calcium_node=None,
                              calcium_node_name=None, params=params)
        if isinstance(artery_source, str):
            cmd += ["--groups-model", artery_source]
            job.groups_model = artery_source
        else:
            job.segments = read_group_segments(artery_source, volume, mapping)
            job.source_node = artery_source
            sitk.WriteImage(job.segments.image, str(work / "groups.nrrd"), True)
            cmd += ["--groups", str(work / "groups.nrrd")]
        if isinstance(calcium, str):
            cmd += (["--calcium-method", calcium] if calcium in thresholds.METHODS
                    else ["--calcium-model", calcium])
        else:
            seg = calcium.GetSegmentation()
            ids = {seg.GetNthSegmentID(i): 1 for i in range(seg.GetNumberOfSegments())}
            img = sitk.Cast(mn.labelmap_from_segmentation(calcium, ids, volume), sitk.sitkUInt8)
            sitk.WriteImage(img, str(work / "calcium.nrrd"), True)
            cmd += ["--calcium", str(work / "calcium.nrrd")]
            job.calcium, job.calcium_node, job.calcium_node_name = img, calcium, calcium.GetName()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(_library_path() + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        log = open(work / "log.txt", "w")
        kwargs = {"preexec_fn": os.setsid} if os.name == "posix" else \
            {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | 0x08000000}  # no console
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
                                   **kwargs)
        log.close()
        (work / "command.json").write_text(json.dumps(cmd))
        return cls(work, cmd, process, job)

    def poll(self):
        """Read the progress written since the last call; returns ``"running"``,
        ``"finished"``, ``"failed"`` or ``"cancelled"`` (``self.progress`` holds the last
        (fraction, stage))."""
        if self.state != "running":
            return self.state
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        for line in text[self._read:].splitlines():
            if line.startswith(PROGRESS):
                frac, _, stage = line[len(PROGRESS):].partition(" ")
                try:
                    self.progress = (float(frac), stage)
                except ValueError:
                    pass
        self._read = len(text)
        code = self.process.poll()
        if code is not None:
            self.state = "finished" if code == 0 and (self.case_folder / "scores.json").exists() \
                else "failed"
        return self.state

    @property
    def case_folder(self):
        return self.folder / "out" / Path(self.command[self.command.index("run") + 1]).name.split(".")[0]

    def error(self):
        """What went wrong, in one paragraph (the case's error record, else the log's end)."""
        errors = sorted((self.folder / "out").glob("*.error.json"))
        if errors:
            rec = json.loads(errors[0].read_text())
            return rec.get("error", ""), rec.get("traceback", "")
        tail = self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""
        return (tail.strip().splitlines() or ["the process ended without output"])[-1], tail

    def cancel(self, timeout=10.0):
        """Stop the process and its children; the scene was never touched.  The work folder
        is removed."""
        if self.process.poll() is None:
            try:
                if os.name == "posix":
                    os.killpg(self.process.pid, signal.SIGKILL)
                else:
                    self.process.kill()
            except ProcessLookupError:
                pass
            self.process.wait(timeout)
        self.state = "cancelled"
        self.cleanup()

    def cleanup(self):
        shutil.rmtree(self.folder, ignore_errors=True)

    def load(self, volume, pipeline=None, shortened=None, table=None):
        """The finished outputs as new nodes (:meth:`.pipeline.CalciumScoringPipeline.publish`);
        returns its :class:`.pipeline.PipelineResult`.  The work folder is removed."""
        from .pipeline import CalciumScoringPipeline, Computed

        if self.poll() != "finished":
            raise RuntimeError(f"the run is {self.state}; nothing to load")
        d = self.case_folder
        rec = json.loads((d / "scores.json").read_text())
        table_df = pd.read_csv(d / "scores.csv").drop(columns=["case_id", "qc_flags"])
        branches = pd.read_csv(d / "shortening_report.csv")
        prov = rec["provenance"]
        c = Computed(
            groups_full=sitk.ReadImage(str(d / "arteries_full.nii.gz")),
            arteries_source=dict(prov["arteries"], run="external process", log=str(self.log_path)),
            shortening=SimpleNamespace(labelmap=sitk.ReadImage(str(d / "arteries.nii.gz")),
                                       branches=branches, parameters=prov["shortening"],
                                       warnings=[]),
            calcium=sitk.ReadImage(str(d / "calcifications.nii.gz")),
            calcium_source=prov["calcification"],
            scores=SimpleNamespace(table=table_df, parameters=prov["scoring"],
                                   warnings=rec.get("warnings", [])),
            plausibility=SimpleNamespace(ok=rec["plausibility"]["ok"],
                                         as_dict=lambda: rec["plausibility"]),
            qc=rec["qc"])
        c.states = {g: (v["state"], v["reason"]) for g, v in rec.get("states", {}).items()}
        c.invalidated_by = rec.get("invalidated_by", [])
        result = (pipeline or CalciumScoringPipeline()).publish(volume, self.job, c,
                                                                 shortened=shortened, table=table)
        self.cleanup()
        return result
