"""Old module paths of ``diagnostics`` (before the estimators, detectors and run log got their
own subpackages), kept importable: ``import diagnostics.mi`` gives the module that holds those
names now. Installed by ``diagnostics/__init__.py``; resolves lazily, on import."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: old module -> the module (or package) that holds its public names now
MOVED = {
    "diagnostics.mi": "diagnostics.estimators",
    "diagnostics.spectral": "diagnostics.estimators",
    "diagnostics.lm": "diagnostics.estimators",
    "diagnostics.compressed": "diagnostics.estimators.compressed",
    "diagnostics.infoplane": "diagnostics.estimators.infoplane",
    "diagnostics.collapse": "diagnostics.detectors",
    "diagnostics.lm_collapse": "diagnostics.detectors",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:
        pass


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
