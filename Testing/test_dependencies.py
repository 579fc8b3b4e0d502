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


def test_without_the_extension_pip_gets_a_range():
    pip = []
    dep.ensure(lambda m: True, pip.append, None, find_spec=spec_without("torch"))
    assert pip == ["torch>=2.1"]


def test_declined_or_failed_installs_raise_a_clear_error():
    with pytest.raises(dep.DependencyError, match="threshold methods"):
        dep.ensure(lambda m: False, pytest.fail, find_spec=spec_without("torch"))

    def broken(req):
        raise RuntimeError("no network")

    with pytest.raises(dep.DependencyError, match="installing safetensors>=0.4 failed: no network"):
        dep.ensure(lambda m: True, broken, find_spec=spec_without("safetensors"))
    with pytest.raises(dep.DependencyError, match="PyTorch extension"):
        dep.ensure(lambda m: True, pytest.fail, FakeTorchUtils(ok=False),
                   find_spec=spec_without("torch"))
