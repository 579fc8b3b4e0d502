"""The cohort review page, rendered in a real headless browser (Debian's chromium).

The page is built from a real cohort run (two phantoms and one broken file): the browser
runs its script, and the DOM it leaves is checked: one row per case, the failed case
first, sorting by a column, every local link and image present, no network address.
Without chromium the browser tests skip and say how to enable them (``dev.py test``
installs it where it may: as root with apt-get, as in CI).
"""

import re
import shutil
import subprocess

import pandas as pd
import pytest
from conftest import write_phantom_cases

from CalciumScoringLib.cohort.cli import main
from CalciumScoringLib.cohort.review import case_row, priority, queue

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("review")
    rows = write_phantom_cases(d, [4, 6], (1.5, 1.5, 2.0))
    (d / "broken.nii.gz").write_bytes(b"not an image")
    rows.append({"case_id": "broken", "ct": "broken.nii.gz", "groups": ""})
    pd.DataFrame(rows).to_csv(d / "cases.csv", index=False)
    out = d / "out"
    assert main(["run", str(d / "cases.csv"), str(out)]) == 1  # one case failed
    return out


def dom(page, fragment=""):
    """The DOM of ``page`` after its script ran, as headless chromium dumps it."""
    if BROWSER is None:
        import os

        if os.environ.get("CI"):  # CI must render the page: dev.py test installs chromium
            pytest.fail("chromium not found in CI: python3.11 dev.py test installs it as root")
        pytest.skip("chromium not found: install Debian's 'chromium' (apt-get install chromium; "
                    "python3.11 dev.py test does it when run as root) to render the review page")
    r = subprocess.run([BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--virtual-time-budget=3000", "--dump-dom",
                        page.resolve().as_uri() + fragment],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def rows_of(text):
    return re.findall(r'<tr data-case="([^"]+)"', text)


def test_queue_file_orders_cases_by_need_of_review(cohort):
    q = pd.read_csv(cohort / "review_queue.csv")
    assert list(q.case_id) == ["broken", "case0", "case1"]
    assert q.loc[0, "reason"] == "failed" and "cannot be read" in q.loc[0, "error"]
    assert set(q.loc[1:, "status"]) == {"ok"} and q.loc[1:, "state_aorta"].eq("measured").all()


def test_priorities():
    base = {"status": "ok", "flags": [], "scores_valid": True}
    assert priority(dict(base, status="failed"))[1] == "failed"
    assert priority(dict(base, flags=["metal_not_calcium", "arteries_implausible"]))[1] \
        == "arteries implausible"
    assert priority(dict(base, flags=["groups_not_found"]))[1] == "groups not found"
    assert priority(dict(base, flags=["calcium_not_reproducible"]))[1] == "calcium unsure or metal"
    assert priority(dict(base, scores_valid=False))[1] == "scores not valid"
    assert priority(base)[1] == "measured"


def test_a_case_row_reads_its_folder(cohort):
    row = case_row(cohort, "case1", {"status": "ok"})
    assert row["thumb"] == "case1/thumb.png" and (cohort / row["thumb"]).exists()
    assert row["scene"] == "case1/scene.mrb" and row["burden_aorta"] is not None
    assert [r["case_id"] for r in queue([row, case_row(cohort, "broken", {"status": "failed"})])] \
        == ["broken", "case1"]


def test_browser_shows_three_rows_failed_first_and_sorts(cohort):
    page = cohort / "index.html"
    text = dom(page)
    assert rows_of(text) == ["broken", "case0", "case1"]
    assert rows_of(dom(page, "#sort=case_id&dir=desc")) == ["case1", "case0", "broken"]
    only = rows_of(dom(page, "#sort=rank&dir=asc&flag=no_such_flag"))
    assert only == []
    assert 'data-render-ms="' in text


def test_every_local_link_resolves_and_nothing_is_fetched(cohort):
    text = re.sub(r"<script.*?</script>", "", dom(cohort / "index.html"), flags=re.S)
    targets = re.findall(r'(?:href|src)="([^"#]+)"', text)
    assert targets, "no links"
    assert not [t for t in targets if re.match(r"^[a-z]+://", t)]  # no network (or file) URL
    assert not re.search(r"https?://", (cohort / "index.html").read_text())
    missing = [t for t in targets if not (cohort / t).exists()]
    assert missing == []
    assert {"case0/scene.mrb", "case0/scores.csv", "case0/report.png", "case0/thumb.png"} <= set(targets)
