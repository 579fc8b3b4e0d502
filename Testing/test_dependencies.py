"""First-use installation: asks first, uses the PyTorch extension when present, never pins."""

import pytest

from CalciumScoringLib import dependencies as dep


def spec_without(*absent):
    return lambda name: None if name in absent else object()


class FakeTorchUtils:
    def __init__(self, ok=True):
        self.calls, self.ok = [], ok

    def installTorch(self, askConfirmation=True):
        self.calls.append(askConfirmation)
        return object() if self.ok else None


def test_nothing_missing_asks_nothing():
    asked = []
    assert dep.ensure(asked.append, pytest.fail, find_spec=spec_without()) == []
    assert asked == []


def test_asks_once_then_installs_torch_through_the_extension():
    asked, pip = [], []
    utils = FakeTorchUtils()
    done = dep.ensure(lambda m: asked.append(m) or True, pip.append, utils, dep.NETWORKS,
                      find_spec=spec_without("torch", "safetensors"))
    assert len(asked) == 1 and "torch>=2.1" in asked[0] and "safetensors>=0.4" in asked[0]
    assert utils.calls == [False]  # the user was asked already
    assert pip == ["safetensors>=0.4"]
    assert done == ["torch>=2.1", "safetensors>=0.4"]
    assert all("==" not in r for r in dep.REQUIRED.values())


def test_without_the_extension_torch_is_never_pip_installed():
    with pytest.raises(dep.DependencyError, match="PyTorch' extension"):
        dep.ensure(lambda m: pytest.fail("asked"), pytest.fail, None,
                   find_spec=spec_without("torch"))


def test_an_old_torch_is_refused_with_what_to_do():
    with pytest.raises(dep.DependencyError, match="PyTorch 1.13 is installed"):
        dep.ensure(lambda m: True, pytest.fail, None, dep.NETWORKS, find_spec=spec_without(),
                   version_of=lambda name: "1.13.1+cpu")
    assert dep.ensure(lambda m: True, pytest.fail, None, dep.NETWORKS, find_spec=spec_without(),
                      version_of=lambda name: "2.13.0") == []


def test_the_dialog_says_why_each_package_is_needed():
    asked = []
    dep.ensure(lambda m: asked.append(m) or True, lambda r: None, None, dep.CORE,
               find_spec=spec_without("pandas", "skimage"))
    assert "score tables" in asked[0] and "path lengths" in asked[0]
    assert "torch" not in asked[0]


def test_declined_or_failed_installs_raise_a_clear_error():
    with pytest.raises(dep.DependencyError, match="threshold methods"):
        dep.ensure(lambda m: False, pytest.fail, FakeTorchUtils(), find_spec=spec_without("torch"))

    def broken(req):
        raise RuntimeError("no network")

    with pytest.raises(dep.DependencyError, match="installing safetensors>=0.4 failed: no network"):
        dep.ensure(lambda m: True, broken, find_spec=spec_without("safetensors"))
    with pytest.raises(dep.DependencyError, match="PyTorch extension"):
        dep.ensure(lambda m: True, pytest.fail, FakeTorchUtils(ok=False),
                   find_spec=spec_without("torch"))
