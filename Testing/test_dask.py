"""Cohorts on Dask and shared output folders, with real faults: a worker killed mid-case,
the whole run killed and restarted, a case that raises, two runs on one folder at once."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import SimpleITK as sitk

pytest.importorskip("distributed")

from CalciumScoringLib.cohort.runner import Case, Options, run_cohort  # noqa: E402

OPTS = Options(groups_model=None, scene=False, threads=1)
CLI = [sys.executable, "-m", "CalciumScoringLib.cohort.cli", "run"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Four phantom cases with their artery groups, a case list, and the single-process
    reference run the distributed runs must equal."""
    from conftest import write_phantom_cases

    d = tmp_path_factory.mktemp("cohort")
    rows = write_phantom_cases(d, [60, 61, 62, 63], (1.2, 1.2, 1.5))
    pd.DataFrame(rows).to_csv(d / "cases.csv", index=False)
    cases = [Case(r["case_id"], str(d / r["ct"]), str(d / r["groups"])) for r in rows]
    run_cohort(cases, d / "reference", OPTS, log=lambda m: None)
    return d, cases


def _scores(folder, case_ids):
    return {c: pd.read_csv(folder / c / "scores.csv") for c in case_ids}


def _same_as_reference(d, out, case_ids):
    ref, got = _scores(d / "reference", case_ids), _scores(out, case_ids)
    for c in case_ids:
        pd.testing.assert_frame_equal(got[c], ref[c])


def _leftovers(out):
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".tmp-"))


def test_worker_killed_mid_case(cohort, tmp_path):
    d, cases = cohort
    out = tmp_path / "out"
    result, killed = {}, []

    def run():
        result["summaries"] = run_cohort(cases, out, OPTS, scheduler="local:2",
                                         log=lambda m: None)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 120
    while not killed and time.time() < deadline:
        for tmp in out.glob(".tmp-case*") if out.exists() else ():
            case_id, pid = tmp.name[len(".tmp-"):].rsplit("-", 1)
            if not (out / case_id).exists():
                os.kill(int(pid), signal.SIGKILL)  # the worker process, in the middle of it
                killed.append(case_id)
                break
        time.sleep(0.02)
    t.join(300)
    assert killed, "no case was seen in progress"
    s = result["summaries"]
    assert sorted(x["case_id"] for x in s) == [c.case_id for c in cases]
    assert all(x["status"] == "ok" for x in s), s
    _same_as_reference(d, out, [c.case_id for c in cases])
    assert _leftovers(out) == []  # nothing a later run could take for a case
    cohort_csv = pd.read_csv(out / "cohort_scores.csv")
    assert sorted(cohort_csv.case_id.unique()) == [c.case_id for c in cases]
    assert len(cohort_csv) == sum(len(v) for v in _scores(out, [c.case_id for c in cases]).values())


def test_whole_run_killed_then_restarted(cohort, tmp_path):
    d, cases = cohort
    out = tmp_path / "out"
    cmd = CLI + [str(d / "cases.csv"), str(out), "--scheduler", "local:2", "--no-scene",
                 "--groups-model", "none"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=os.setsid)  # its own process group
    deadline = time.time() + 180
    while time.time() < deadline and not any((out / c.case_id / "scores.json").exists()
                                             for c in cases):
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)  # the command, its scheduler and its workers
    p.wait()
    first = [c.case_id for c in cases if (out / c.case_id / "scores.json").exists()]
    assert 1 <= len(first) < len(cases)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for c in first:
        assert f"{c}: skipped (done)" in r.stdout
    cohort_csv = pd.read_csv(out / "cohort_scores.csv")
    assert (cohort_csv.groupby("case_id").region.count() == 11).all()  # each case once
    assert sorted(cohort_csv.case_id.unique()) == [c.case_id for c in cases]
    _same_as_reference(d, out, [c.case_id for c in cases])
    assert _leftovers(out) == []


def test_a_failing_case_is_recorded_once_and_the_others_finish(cohort, tmp_path):
    d, cases = cohort
    flat = sitk.Image(64, 64, 1, sitk.sitkInt16)  # a single slice: refused as input
    sitk.WriteImage(flat, str(tmp_path / "flat.nii.gz"))
    bad = Case("broken", str(tmp_path / "flat.nii.gz"), cases[0].groups)
    out = tmp_path / "out"
    s = run_cohort(cases[:2] + [bad], out, OPTS, scheduler="local:2", log=lambda m: None)
    assert sorted((x["case_id"], x["status"]) for x in s) == [
        ("broken", "failed"), ("case0", "ok"), ("case1", "ok")]  # one summary each: no retry
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors.case_id) == ["broken"] and "2D" in errors.error[0]
    assert json.loads((out / "broken.error.json").read_text())["case_id"] == "broken"
    _same_as_reference(d, out, ["case0", "case1"])


def test_two_runs_on_one_output_folder_at_once(cohort, tmp_path):
    d, cases = cohort
    out = tmp_path / "out"
    cmd = CLI + [str(d / "cases.csv"), str(out), "--no-scene", "--groups-model", "none"]
    runs = [subprocess.Popen(cmd + extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for extra in ([], ["--scheduler", "local:1"])]
    logs = [p.communicate(timeout=300)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0], logs
    ok = sum(log.count(f"{c.case_id}: ok") for log in logs for c in cases)
    assert ok == len(cases), logs  # each case computed by exactly one of the two runs
    _same_as_reference(d, out, [c.case_id for c in cases])
    cohort_csv = pd.read_csv(out / "cohort_scores.csv")
    assert (cohort_csv.groupby("case_id").region.count() == 11).all()
    assert _leftovers(out) == [] and not list(out.glob("*.error.json"))


def test_missing_dask_and_bad_addresses_say_what_to_do(monkeypatch, cohort, tmp_path):
    from CalciumScoringLib.cohort import distributed

    with pytest.raises(ValueError, match="local:N"):
        distributed.connect("local:0")
    with pytest.raises(ValueError, match="scheduler address"):
        distributed.connect("myhost:8786")
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(RuntimeError, match=r"pip install 'vascular-calcium\[dask\]'"):
        distributed.connect("local:1")


def test_a_process_loads_each_network_once(phantom_cache, monkeypatch):
    """What makes a Dask (or --workers) worker load the models once, not once per case."""
    from CalciumScoringLib.segmentation import engine, models

    calls = []
    real = models.verify_weights
    monkeypatch.setattr(engine, "verify_weights", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(engine, "_NETWORKS", {})
    ph = phantom_cache(61, (2.0, 2.0, 2.0), fov="vessels")
    for _ in range(3):
        engine.segment(ph.ct, models.bundled_model("artery-groups"), threads=1)
    # artery-groups and its second stage (the branch network), each loaded once for 3 cases
    assert len(calls) == 2 and len(engine.loaded_networks()) == 2
