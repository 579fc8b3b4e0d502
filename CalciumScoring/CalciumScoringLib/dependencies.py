"""Python packages the modules need inside Slicer, installed on first use after consent.

Nothing is installed at import or start-up.  :func:`ensure` lists what is missing with
why each is needed, asks ``confirm(message)`` once, and installs.  PyTorch comes only
through the Slicer PyTorch extension's ``PyTorchUtilsLogic`` (it picks the CUDA/CPU build
that fits the machine); without the extension the user is told to install it, never
handed a pip build (on Linux pip's default torch is a multi-GB CUDA build).  An installed
torch older than :data:`TORCH_MIN` is refused with what to do.  The other packages come
from ``pip_install`` with a version range.  The module passes Slicer's dialog and
installer; tests pass fakes.
"""

import importlib.util

#: import name -> pip requirement (ranges, never exact pins); Slicer ships numpy, scipy, SimpleITK
CORE = {"pandas": "pandas>=1.5", "skimage": "scikit-image>=0.21"}
NETWORKS = {"torch": "torch>=2.1", "safetensors": "safetensors>=0.4"}
REQUIRED = {**CORE, **NETWORKS}
OPTIONAL = {"nnunetv2": "nnunetv2>=2.4"}
#: what each package is for, as the consent dialog says it
WHY = {"pandas": "score tables and the shortening report",
       "skimage": "the shortening's path lengths along the arteries",
       "torch": "the segmentation networks",
       "safetensors": "reading the networks' weights",
       "nnunetv2": "nnU-Net model folders"}
TORCH_MIN = (2, 1)


class DependencyError(RuntimeError):
    """The user declined, or an install failed; the message says what to do."""


def missing(packages=None, find_spec=importlib.util.find_spec):
    """``{import name: requirement}`` of the packages that cannot be imported."""
    packages = REQUIRED if packages is None else packages
    return {name: req for name, req in packages.items() if find_spec(name) is None}


def torch_version(version_of=None):
    """The installed torch version as a tuple of ints, or None."""
    from importlib import metadata

    try:
        text = (version_of or metadata.version)("torch")
    except Exception:
        return None
    parts = []
    for piece in text.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def ensure(confirm, pip_install, torch_utils=None, packages=None,
           find_spec=importlib.util.find_spec, version_of=None):
    """Install what is missing after ``confirm``; returns the list of requirements installed.

    ``torch_utils``: an object with ``installTorch(askConfirmation)`` (the PyTorch
    extension's logic) or ``None``; ``version_of``: ``importlib.metadata.version`` (tests
    pass a fake).
    """
    packages = REQUIRED if packages is None else packages
    if "torch" in packages and find_spec("torch") is not None:
        v = torch_version(version_of)
        if v is not None and v < TORCH_MIN:
            raise DependencyError(f"PyTorch {'.'.join(map(str, v))} is installed; the networks "
                                  f"need {'.'.join(map(str, TORCH_MIN))} or newer: update it in "
                                  "the PyTorch module (PyTorch extension), then try again")
    todo = missing(packages, find_spec)
    if not todo:
        return []
    if "torch" in todo and torch_utils is None:
        raise DependencyError("the networks need PyTorch: install the 'PyTorch' extension "
                              "(Extension Manager), restart Slicer, and try again; threshold "
                              "methods and existing segmentations work without it")
    lines = "\n".join(f"  - {req}: {WHY.get(name, 'needed')}" for name, req in todo.items())
    message = ("Calcium Scoring needs these Python packages:\n"
               f"{lines}\n\nThey will be downloaded and installed into Slicer's Python"
               + (" (PyTorch through the PyTorch extension: several hundred MB)"
                  if "torch" in todo else "") + ". Install now?")
    if not confirm(message):
        raise DependencyError("the packages were not installed, so this cannot run; "
                              "threshold methods and existing segmentations need only "
                              + ", ".join(CORE.values()))
    done = []
    if "torch" in todo:
        if torch_utils.installTorch(askConfirmation=False) is None:
            raise DependencyError("the PyTorch extension could not install PyTorch; install it "
                                  "from the PyTorch module, then try again")
        done.append(todo.pop("torch"))
    for req in todo.values():
        try:
            pip_install(req)
        except Exception as exc:  # pip's own message is the useful part
            raise DependencyError(f"installing {req} failed: {exc}") from exc
        done.append(req)
    return done
