#!/usr/bin/env python3
"""Set up a virtual environment and run the demo or the tests (only Python 3 needed).

    python3.11 dev.py demo   # create .venv, install, run the pipeline on a phantom CTA
    python3.11 dev.py test   # create .venv, install, run the whole test suite (and, as
                             # root with apt-get, install chromium for the browser tests)

The environment is created once in ``.venv`` and reinstalled only when
``pyproject.toml`` or ``Testing/constraints.txt`` change.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".vascular-calcium-installed"


def _python():
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _digest():
    h = hashlib.sha256()
    for f in ("pyproject.toml", "Testing/constraints.txt"):
        h.update((ROOT / f).read_bytes())
    return h.hexdigest()


def setup():
    """Create ``.venv`` and install the project with its test extras (idempotent)."""
    if sys.version_info < (3, 9):
        sys.exit("Python >= 3.9 is needed (3.11 recommended)")
    if not _python().exists():
        print(f"[setup] creating {VENV}", flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    if STAMP.exists() and STAMP.read_text() == _digest():
        return
    py = str(_python())
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    print("[setup] installing dependencies (first run: a few minutes)", flush=True)
    subprocess.check_call(pip + ["--upgrade", "pip"])
    constraints = str(ROOT / "Testing" / "constraints.txt")
    # torch first and alone, from the pinned CPU build, so nothing pulls a CUDA build
    subprocess.check_call(pip + ["-c", constraints, "torch"])
    subprocess.check_call(pip + ["-c", constraints, "-e", f"{ROOT}[test]"])
    STAMP.write_text(_digest())


def ensure_browser():
    """Debian's chromium for the review-page tests: installed with apt-get when missing and
    this runs as root (as CI does); otherwise those tests skip and say how to enable them."""
    import shutil

    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        print("[setup] chromium not found: the review-page browser tests will skip "
              "(install Debian's 'chromium' to run them)", flush=True)
        return
    print("[setup] installing chromium for the review-page tests (apt-get)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    if subprocess.call(["apt-get", "update", "-qq"], **quiet) or \
            subprocess.call(["apt-get", "install", "-y", "-qq", "chromium"], **quiet):
        print("[setup] could not install chromium: the browser tests will skip", flush=True)


def main(argv):
    if not argv or argv[0] not in ("setup", "demo", "test"):
        sys.exit(__doc__)
    setup()
    py = str(_python())
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if argv[0] == "demo":
        out = argv[1] if len(argv) > 1 else "demo-output"
        return subprocess.call([py, "-m", "CalciumScoringLib.cohort.cli", "demo", out] + argv[2:], env=env)
    if argv[0] == "test":
        ensure_browser()
        return subprocess.call([py, "-m", "pytest", "Testing"] + argv[1:], cwd=ROOT, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
