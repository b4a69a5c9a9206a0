"""Every name the package advertises at top level resolves to a real object of its module."""

import importlib

import pytest

import tl_thinktok


@pytest.mark.parametrize("name", [n for n in tl_thinktok.__all__ if n != "__version__"])
def test_export_resolves(name):
    obj = getattr(tl_thinktok, name)
    module = importlib.import_module(tl_thinktok._EXPORTS[name])
    assert obj is getattr(module, name)


def test_unknown_attribute_names_itself():
    with pytest.raises(AttributeError, match="no_such_thing"):
        tl_thinktok.no_such_thing  # noqa: B018
