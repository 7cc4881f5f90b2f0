"""What every rule family shares: the report, options, and small onnx-ir helpers."""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import onnx_ir as ir

KAIO_DOMAIN = "com.kaio"
KAIO_OPSET = 1
MS_DOMAIN = "com.microsoft"
ACTIVATION_TYPES = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)


@dataclasses.dataclass(frozen=True)
class LeftAlone:
    """One node (or group of nodes) a rule looked at and did not rewrite, and why."""
    rule: str
    nodes: tuple[str, ...]
    op_type: str
    reason: str

    def as_dict(self) -> dict:
        return {"rule": self.rule, "nodes": list(self.nodes), "op_type": self.op_type, "reason": self.reason}


@dataclasses.dataclass
class RuleReport:
    """One rule family's outcome: how many rewrites it made (and which nodes they replaced), and
    every candidate it left alone with the reason."""
    rule: str
    replaced: int = 0
    replaced_nodes: list = dataclasses.field(default_factory=list)   # list[tuple[str, ...]]
    left_alone: list = dataclasses.field(default_factory=list)       # list[LeftAlone]

    def add_replaced(self, *nodes: ir.Node) -> None:
        self.replaced += 1
        self.replaced_nodes.append(tuple(n.name or "" for n in nodes))

    def add_left_alone(self, nodes, op_type: str, reason: str) -> None:
        nodes = tuple(n.name or "" for n in (nodes if isinstance(nodes, (list, tuple)) else [nodes]))
        self.left_alone.append(LeftAlone(self.rule, nodes, op_type, reason))

    def as_dict(self) -> dict:
        return {"rule": self.rule, "replaced": self.replaced,
                "replaced_nodes": [list(n) for n in self.replaced_nodes],
                "left_alone": [x.as_dict() for x in self.left_alone]}


@dataclasses.dataclass
class RewriteReport:
    """What ``rewrite_model`` did, per rule, in the order the rules ran."""
    rules: dict = dataclasses.field(default_factory=dict)            # name -> RuleReport

    @property
    def replaced(self) -> dict:
        return {name: r.replaced for name, r in self.rules.items()}

    @property
    def left_alone(self) -> list:
        return [x for r in self.rules.values() for x in r.left_alone]

    def as_dict(self) -> dict:
        return {"rules": [r.as_dict() for r in self.rules.values()]}

    def format(self) -> str:
        lines = []
        for r in self.rules.values():
            lines.append(f"{r.rule}: replaced {r.replaced}, left alone {len(r.left_alone)}")
            for x in r.left_alone:
                lines.append(f"  {x.op_type} {', '.join(repr(n) for n in x.nodes)}: {x.reason}")
        return "\n".join(lines)

    __str__ = format


@dataclasses.dataclass(frozen=True)
class Options:
    """Knobs shared by the rule families (``rewrite_model``'s keyword arguments)."""
    cast_float32: bool = False        # float32 MatMulNBits: Cast A to float16 (approximate) instead of leaving it
    progress: Optional[Callable[[str, int, int], None]] = None   # (rule, done, total)


class Context:
    """Per-run state: the model, unique names, values that may have become unused."""

    def __init__(self, model: ir.Model, options: Options):
        self.model = model
        self.options = options
        self._names = set(model.graph.initializers) | {v.name for v in model.graph.inputs}
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            self._names.update(v.name for v in node.outputs if v.name)
        self.maybe_unused: list[ir.Value] = []

    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def new_initializer(self, array: np.ndarray, base: str) -> ir.Value:
        """A new graph initializer holding `array` (not yet used by any node)."""
        name = self.unique_name(base)
        tensor = ir.tensor(np.ascontiguousarray(array), name=name)
        value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype),
                         const_value=tensor)
        self.model.graph.register_initializer(value)
        return value

    def use_kaio_opset(self) -> None:
        self.model.graph.opset_imports.setdefault(KAIO_DOMAIN, KAIO_OPSET)

    def remove_unused_initializers(self) -> None:
        """Drops the initializers of replaced nodes that nothing reads any more."""
        graph = self.model.graph
        seen = set()
        for v in self.maybe_unused:
            if id(v) in seen or v.name not in graph.initializers or graph.initializers[v.name] is not v:
                continue
            seen.add(id(v))
            if not v.uses() and not v.is_graph_output() and not v.is_graph_input():
                del graph.initializers[v.name]
        self.maybe_unused.clear()


def const_array(value: Optional[ir.Value]) -> Optional[np.ndarray]:
    """The numpy array of a constant value (initializer or Constant node), else None."""
    if value is None:
        return None
    t = ir.convenience.get_const_tensor(value)
    return None if t is None else t.numpy()


def dtype_name(dt: Optional[ir.DataType]) -> str:
    return "unknown" if dt is None else dt.name.lower()


def guarded(check, *args):
    """check(*args) -> (reason, plan); a node that cannot even be read (an attribute of the wrong type,
    a malformed initializer, a required input left empty) is left alone with that as its reason instead
    of stopping the rewrite."""
    try:
        return check(*args)
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as e:
        return f"malformed node ({type(e).__name__}: {e})", None
