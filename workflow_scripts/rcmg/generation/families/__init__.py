"""Model families: one module per generator family behind one interface.

A family (:class:`rcmg.generation.families.base.ModelFamily`) is everything the generate,
train_adapter and align_check jobs need to know about one kind of model; the jobs
themselves name no family. ``models.<m>.family`` in the config picks one:

* a registered name (:data:`REGISTERED`), the families this package ships; or
* an import path ``package.module:ClassName`` (importable from ``workflow_scripts/`` or
  ``PYTHONPATH``), or a file ``path/to/module.py:ClassName``, of a family that lives
  elsewhere (a test's minimal family, the demo's planted-effect stand-in), so product
  code never imports it; the class must subclass
  :class:`~rcmg.generation.families.base.ModelFamily`.

Standard library only at import time (rules/common.smk asks families about their
capabilities while Snakemake parses); a family module imports torch/diffusers inside
the methods that need them.
"""

from __future__ import annotations

import importlib
from functools import cache

from rcmg.workflow.cli import InputError

# name -> "module:Class" of the families shipped with the product
REGISTERED = {
    "audioldm1": "rcmg.generation.families.audioldm1:AudioLDM1",
    "audioldm2": "rcmg.generation.families.audioldm2:AudioLDM2",
    "musicgen": "rcmg.generation.families.musicgen:Musicgen",
    "musicgen_melody": "rcmg.generation.families.musicgen_melody:MusicgenMelody",
    "stable_audio": "rcmg.generation.families.stable_audio:StableAudio",
}


class FamilyError(InputError):
    """A ``family`` that names no registered family and no importable family class."""


def is_import_path(spec: str) -> bool:
    return ":" in str(spec)


@cache
def family_class(spec: str):
    """The family class ``spec`` names (a registered name or ``module:Class``)."""
    from rcmg.generation.families.base import ModelFamily

    spec = str(spec).strip()
    target = REGISTERED.get(spec, spec if is_import_path(spec) else None)
    if target is None:
        raise FamilyError(
            f"unknown model family {spec!r}; choose one of {', '.join(REGISTERED)} or give "
            "an import path package.module:ClassName of a ModelFamily subclass"
        )
    module_name, _, attr = target.rpartition(":")
    try:
        cls = getattr(_import(module_name), attr)
    except (ImportError, AttributeError, OSError) as err:
        raise FamilyError(
            f"model family {spec!r}: cannot import {target} ({err}); check the module path "
            "(it must be importable from workflow_scripts/ or PYTHONPATH) and the class name"
        ) from err
    if not (isinstance(cls, type) and issubclass(cls, ModelFamily)):
        raise FamilyError(f"model family {spec!r}: {target} is not a ModelFamily subclass")
    return cls


def _import(module_name: str):
    """A module by dotted name, or by file path (``.py``)."""
    if not module_name.endswith(".py"):
        return importlib.import_module(module_name)
    import sys
    from importlib import util
    from pathlib import Path

    path = Path(module_name).expanduser().resolve()
    name = f"rcmg_family_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = util.spec_from_file_location(name, path)
    if spec is None or not path.is_file():
        raise ImportError(f"no module file {path}")
    module = util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def get_family(spec: str):
    """An instance of the family ``spec`` names (families hold no state: one per call)."""
    return family_class(spec)()


def family_problem(spec) -> str | None:
    """Why ``spec`` names no family (None when it does): for the config checks."""
    try:
        family_class(str(spec))
    except FamilyError as err:
        return str(err)
    return None
