"""Write tests/public_api.json: every public name of mnv3compile (``__all__`` and the plugin
surfaces) with its parameters, or a class's public members. tests/test_public_api.py fails when
one of them disappears or loses a parameter; run this only when the API grows (a new minor
version), never to make that test pass after removing something (a new major version)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from importlib import import_module
from pathlib import Path

# Modules whose public names are plugin surfaces, beside ``mnv3compile`` itself.
SURFACES = {
    "mnv3compile": None,  # its __all__
    "mnv3compile.passes": None,
    "mnv3compile.tvm": None,
    "mnv3compile.schedules": None,
}


def describe(value) -> dict:
    if inspect.isclass(value):
        # methods and properties, and the attributes its instances carry (dataclass fields, annotations)
        names = set(dir(value)) | set(getattr(value, "__annotations__", {}))
        names |= {f.name for f in dataclasses.fields(value)} if dataclasses.is_dataclass(value) else set()
        return {"kind": "class", "members": sorted(n for n in names if not n.startswith("_"))}
    if callable(value):
        parameters = [p.name for p in inspect.signature(value).parameters.values()]
        return {"kind": "function", "parameters": parameters}
    return {"kind": "value"}


def snapshot() -> dict:
    found = {}
    for module_name in SURFACES:
        module = import_module(module_name)
        for name in getattr(module, "__all__", []):
            if name == "__version__":
                continue
            found[f"{module_name}.{name}"] = describe(getattr(module, name))
    return found


if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "tests" / "public_api.json"
    path.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")
