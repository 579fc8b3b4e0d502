"""Python packages the networks need inside Slicer, installed on first use after consent.

Nothing is installed at import or start-up.  :func:`ensure` lists what is missing,
asks ``confirm(message)`` once, and installs: PyTorch through the Slicer PyTorch
extension's ``PyTorchUtilsLogic`` when present (it picks the right CUDA/CPU build),
otherwise with ``pip_install`` and a version range; the other packages with
``pip_install``.  The module passes Slicer's dialog and installer; tests pass fakes.
"""

import importlib.util

#: import name -> pip requirement (ranges, never exact pins); Slicer ships numpy, scipy, SimpleITK
CORE = {"pandas": "pandas>=1.5", "skimage": "scikit-image>=0.21"}
NETWORKS = {"torch": "torch>=2.1", "safetensors": "safetensors>=0.4"}
REQUIRED = {**CORE, **NETWORKS}
OPTIONAL = {"nnunetv2": "nnunetv2>=2.4"}


class DependencyError(RuntimeError):
    """The user declined, or an install failed; the message says what to do."""


def missing(packages=None, find_spec=importlib.util.find_spec):
    """``{import name: requirement}`` of the packages that cannot be imported."""
    packages = REQUIRED if packages is None else packages
    return {name: req for name, req in packages.items() if find_spec(name) is None}


def ensure(confirm, pip_install, torch_utils=None, packages=None,
           find_spec=importlib.util.find_spec):
    """Install what is missing after ``confirm``; returns the list of requirements installed.

    ``torch_utils``: an object with ``installTorch(askConfirmation)`` (the PyTorch
    extension's logic) or ``None``.
    """
    todo = missing(packages, find_spec)
    if not todo:
        return []
    lines = "\n".join(f"  - {req}" for req in todo.values())
    message = ("Calcium Scoring needs these Python packages to run its networks:\n"
               f"{lines}\n\nThey will be downloaded and installed into Slicer's Python "
               "(several hundred MB for PyTorch). Install now?")
    if not confirm(message):
        raise DependencyError("the packages were not installed, so the networks cannot run; "
                              "threshold methods and existing segmentations still work")
    done = []
    if "torch" in todo and torch_utils is not None:
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
