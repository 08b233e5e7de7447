"""The packages' front-door examples are real doctests: they run (pytest --doctest-modules) and cannot silently vanish."""

from __future__ import annotations

import doctest
import importlib

import pytest

#: Public packages whose docstring shows how to start; each must keep at least one example that runs.
DOCUMENTED = ["workers", "workers.hyperv", "sweep", "sweep.search", "sweep.report", "sweep.calibrate"]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_the_package_example_exists_and_holds(name: str) -> None:
    module = importlib.import_module(name)
    (test,) = [t for t in doctest.DocTestFinder(recurse=False).find(module) if t.name == name]
    runnable = [e for e in test.examples if not e.options.get(doctest.SKIP)]
    assert runnable, f"{name}'s docstring has no runnable example"
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE).run(test, out=lambda _: None)
    assert result.failed == 0 and result.attempted == len(test.examples)
