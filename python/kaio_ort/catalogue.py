"""The com.kaio op catalogue: one entry per op, defined once and used by the docs, the test graph
builders and the graph rewrites. Input/output names, element types and the execution providers
with a kernel come from the built library itself (``library_description``); attributes and
documentation are declared here in the per-family modules under ``kaio_ort.op_specs``."""
from __future__ import annotations

from dataclasses import dataclass, field

DOMAIN = "com.kaio"
OPSET_VERSION = 1


@dataclass(frozen=True)
class AttrSpec:
    name: str
    type: str          # "int", "float" or "string"
    default: object
    doc: str


@dataclass(frozen=True)
class OpSpec:
    """What Python declares about an op: its documentation and attributes."""
    name: str
    doc: str
    attributes: tuple[AttrSpec, ...] = ()


@dataclass(frozen=True)
class IoInfo:
    name: str
    types: tuple[str, ...]
    optional: bool


@dataclass(frozen=True)
class OpInfo:
    """One op as ``kaio_ort.ops()`` reports it."""
    name: str
    doc: str
    inputs: tuple[IoInfo, ...]
    outputs: tuple[IoInfo, ...]
    attributes: tuple[AttrSpec, ...]
    providers: tuple[str, ...] = field(default=())


def op_specs() -> dict[str, OpSpec]:
    """Every op's Python-side declaration, by name."""
    from .op_specs import ALL_SPECS

    return {s.name: s for s in ALL_SPECS}


def ops() -> dict[str, OpInfo]:
    """The catalogue: every com.kaio op with its inputs, outputs, attributes, dtypes and the
    execution providers it has a kernel on in this build."""
    from . import library_description

    desc = library_description()
    specs = op_specs()
    by_name: dict[str, OpInfo] = {}
    for k in desc["kernels"]:
        spec = specs.get(k["op"])
        if spec is None:
            raise RuntimeError(f"library registers {k['op']} but kaio_ort.op_specs does not declare it")
        io = lambda lst: tuple(IoInfo(x["name"], tuple(x["types"]), x["optional"]) for x in lst)  # noqa: E731
        prev = by_name.get(k["op"])
        providers = (prev.providers if prev else ()) + (k["ep"],)
        by_name[k["op"]] = OpInfo(k["op"], spec.doc, io(k["inputs"]), io(k["outputs"]), spec.attributes, providers)
    return by_name
