"""Both YAML loaders: buf.yaml and buf.lock must read the same, and fail with the same message
and line, whether PyYAML has libyaml or not."""

from __future__ import annotations

import pytest
import yaml


@pytest.fixture(params=["libyaml", "pure"])
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test runs once with libyaml's loader and once as on a PyYAML built without it."""
    if request.param == "libyaml" and not yaml.__with_libyaml__:
        pytest.skip("PyYAML is built without libyaml here")
    if request.param == "pure":
        monkeypatch.setattr(yaml, "__with_libyaml__", False)
    return request.param
