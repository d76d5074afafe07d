"""Every public labkit function and class says which lab teaches it."""

import importlib
import inspect
import pkgutil
import re

import labkit

MODULES = [importlib.import_module(m.name) for m in pkgutil.walk_packages(labkit.__path__, "labkit.")
           if not m.name.rsplit(".", 1)[-1].startswith("_") and not m.ispkg]


def public_objects():
    for module in MODULES:
        for name, obj in vars(module).items():
            if (not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
                    and obj.__module__ == module.__name__):
                yield f"{module.__name__}.{name}", obj


def test_every_public_object_names_its_lab():
    missing = [name for name, obj in public_objects()
               if not re.search(r"\bLab \d\d\b|\bAll labs\b", inspect.getdoc(obj) or "")]
    assert not missing, f"docstrings that name no lab: {missing}"


def test_every_module_explains_itself():
    assert len(MODULES) == sum(len(modules) for modules in labkit.LAYERS.values()), "every module of every layer"
    assert all(module.__doc__ and len(module.__doc__.strip()) > 40 for module in MODULES)
