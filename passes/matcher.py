"""A small pattern matcher over onnx_ir graphs: patterns as data, rules as pattern + check + rewrite.

A pattern is a tree of :class:`OpPattern` (an ONNX op whose inputs match sub-patterns),
:class:`Var` (any value, bound by name; the same name must bind the same value) and
:class:`Const` (a constant initializer, optionally equal to a scalar). ``op.Mul(x, op.Clip(...))``
builds patterns the way the op would be called. Add, Mul, Min and Max match their two operands in
either order.

Nodes inside a match other than the root must not be used outside it, so a rewrite never changes a
value someone else still reads ("a Conv output used twice" is refused, not duplicated).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

COMMUTATIVE = frozenset({"Add", "Mul", "Min", "Max"})


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Const:
    """A constant; with ``value`` it must be a scalar (or an all-equal tensor) close to it."""

    name: str
    value: float | None = None
    rtol: float = 1e-5


@dataclass(frozen=True)
class OpPattern:
    op_type: str
    inputs: tuple["Pattern", ...]
    name: str | None = None  # binds the matched node under this name
    attrs: Mapping[str, object] = field(default_factory=dict)  # exact attribute values required


Pattern = Var | Const | OpPattern


class _OpBuilder:
    """``op.Clip(x, lo, hi, name="clip")`` -> OpPattern("Clip", (x, lo, hi), "clip")."""

    def __getattr__(self, op_type: str) -> Callable[..., OpPattern]:
        def build(*inputs: Pattern, name: str | None = None, **attrs) -> OpPattern:
            return OpPattern(op_type, tuple(inputs), name, attrs)

        return build


op = _OpBuilder()


@dataclass
class Match:
    """What a pattern bound: values by Var/Const name, nodes by OpPattern name, and every node."""

    root: ir.Node
    values: dict[str, ir.Value] = field(default_factory=dict)
    nodes: dict[str, ir.Node] = field(default_factory=dict)
    matched_nodes: list[ir.Node] = field(default_factory=list)

    def const(self, name: str) -> np.ndarray:
        return constant_array(self.values[name])

    def copy(self) -> "Match":
        return Match(self.root, dict(self.values), dict(self.nodes), list(self.matched_nodes))


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The numpy array behind a constant value (initializer), or None when it is not constant."""
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def reduce_axes(node: ir.Node) -> list[int] | None:
    """The axes a Reduce* node names (its ``axes`` input from opset 18, or attribute before), as
    given (maybe negative); None when they are not constant or not given (all axes)."""
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = constant_array(node.inputs[1])
        return None if axes is None else [int(a) for a in axes.reshape(-1)]
    axes = node.attributes.get_ints("axes", None)
    return None if axes is None else [int(a) for a in axes]


def is_scalar_like(array: np.ndarray, target: float, rtol: float = 1e-5) -> bool:
    if array.size == 0 or not np.issubdtype(array.dtype, np.floating):
        return False
    return bool(np.allclose(array, target, rtol=rtol, atol=rtol * abs(target) + 1e-12))


def _attr_value(node: ir.Node, name: str):
    attr = node.attributes.get(name)
    return None if attr is None else attr.value


def _bind(name: str, value: ir.Value, m: Match) -> Iterator[Match]:
    """Bind ``name`` to ``value`` unless it is already bound to another value."""
    bound = m.values.get(name)
    if bound is None or bound is value:
        result = m.copy()
        result.values[name] = value
        yield result


def _match(pattern: Pattern, value: ir.Value | None, m: Match) -> Iterator[Match]:
    if value is None:
        return
    if isinstance(pattern, Var):
        yield from _bind(pattern.name, value, m)
        return
    if isinstance(pattern, Const):
        array = constant_array(value)
        if array is None or (pattern.value is not None and not is_scalar_like(array, pattern.value, pattern.rtol)):
            return
        yield from _bind(pattern.name, value, m)
        return
    node = value.producer()
    if node is None or node.op_type != pattern.op_type or node.domain not in ("", "ai.onnx"):
        return
    if any(_attr_value(node, k) != v for k, v in pattern.attrs.items()):
        return
    inputs = list(node.inputs)
    while inputs and inputs[-1] is None:  # trailing optional inputs left empty
        inputs.pop()
    if len(inputs) != len(pattern.inputs):
        return
    orders = [pattern.inputs]
    if pattern.op_type in COMMUTATIVE and len(pattern.inputs) == 2:
        orders.append(pattern.inputs[::-1])
    for order in orders:
        base = m.copy()
        base.matched_nodes.append(node)
        if pattern.name:
            base.nodes[pattern.name] = node
        yield from _match_all(order, inputs, base)


def _match_all(patterns, values, m: Match) -> Iterator[Match]:
    if not patterns:
        yield m
        return
    for partial in _match(patterns[0], values[0], m):
        yield from _match_all(patterns[1:], values[1:], partial)


def _interior_is_private(m: Match) -> bool:
    """Every matched node except the root is read only by matched nodes and is no graph output."""
    inside = set(map(id, m.matched_nodes))
    for node in m.matched_nodes:
        if node is m.root:
            continue
        for output in node.outputs:
            if output.is_graph_output():
                return False
            if any(id(user) not in inside for user, _ in output.uses()):
                return False
    return True


def find_match(pattern: OpPattern, node: ir.Node) -> Match | None:
    """The first way ``pattern`` matches with ``node`` as its root, or None."""
    if node.op_type != pattern.op_type or not node.outputs:
        return None
    for m in _match(pattern, node.outputs[0], Match(root=node)):
        if _interior_is_private(m):
            return m
    return None


@dataclass
class PassStats:
    matched: int = 0
    rewritten: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # reason -> count

    def add(self, other: "PassStats") -> None:
        self.matched += other.matched
        self.rewritten += other.rewritten
        for reason, count in other.refused.items():
            self.refused[reason] = self.refused.get(reason, 0) + count


Check = Callable[[Match], "str | None"]
Rewrite = Callable[[Match, "RewriteBuilder"], ir.Value]


@dataclass(frozen=True)
class Rule:
    """A rewrite rule: where it applies (pattern), whether it may (check), and what it makes."""

    name: str
    pattern: OpPattern
    rewrite: Rewrite
    check: Check = lambda m: None  # returns a reason to refuse, or None
    # Filters out matches that are already in the rule's target form (not counted as matched).
    when: Callable[[Match], bool] = lambda m: True


class RewriteBuilder:
    """Creates the replacement nodes of one rewrite, named after the node they replace."""

    def __init__(self, root: ir.Node):
        self.root = root
        self.nodes: list[ir.Node] = []

    def op(self, op_type: str, inputs: list[ir.Value | None], name_suffix: str, **attributes) -> ir.Value:
        base = self.root.name or self.root.op_type
        node = ir.node(op_type, inputs, attributes=attributes, name=f"{base}/{name_suffix}")
        self.nodes.append(node)
        return node.outputs[0]

    def initializer(self, graph: ir.Graph, array: np.ndarray, name_suffix: str) -> ir.Value:
        return add_initializer(graph, array, f"{self.root.name or self.root.op_type}/{name_suffix}")


def add_initializer(graph: ir.Graph, array: np.ndarray, name: str) -> ir.Value:
    """Register ``array`` as a new initializer with a name not yet used in ``graph``."""
    unique, counter = name, 1
    while unique in graph.initializers:
        counter += 1
        unique = f"{name}_{counter}"
    value = ir.Value(name=unique, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.tensor(array, name=unique))
    graph.register_initializer(value)
    return value


def apply_rules(graph: ir.Graph, rules: list[Rule]) -> PassStats:
    """Apply every rule once over the graph, in rule order; returns what matched and what changed."""
    stats = PassStats()
    for rule in rules:
        for node in list(graph):
            if node.graph is not graph:  # removed by an earlier rewrite in this sweep
                continue
            m = find_match(rule.pattern, node)
            if m is None or not rule.when(m):
                continue
            stats.matched += 1
            reason = rule.check(m)
            if reason is not None:
                stats.refused[f"{rule.name}: {reason}"] = stats.refused.get(f"{rule.name}: {reason}", 0) + 1
                continue
            builder = RewriteBuilder(m.root)
            new_output = rule.rewrite(m, builder)
            old_output = m.root.outputs[0]
            replace_subgraph(graph, m.matched_nodes, builder.nodes, old_output, new_output)
            stats.rewritten += 1
    return stats


def replace_subgraph(graph: ir.Graph, old_nodes: list[ir.Node], new_nodes: list[ir.Node],
                     old_output: ir.Value, new_output: ir.Value) -> None:
    """Swap ``old_nodes`` for ``new_nodes``; readers of ``old_output`` read ``new_output`` instead.

    The replacement takes over the old value's name, so graph outputs keep their names.
    """
    root = next(n for n in old_nodes if old_output in n.outputs)
    if old_output.is_graph_output() and (new_output.is_graph_input() or new_output.is_initializer()
                                         or new_output.is_graph_output()):
        # A graph output cannot simply become another named boundary value: copy it.
        identity = ir.node("Identity", [new_output], name=f"{root.name}/identity")
        new_nodes = [*new_nodes, identity]
        new_output = identity.outputs[0]
    if new_nodes:
        graph.insert_before(root, new_nodes)
    name, was_graph_output = old_output.name, old_output.is_graph_output()
    # The replacement computes the same tensor: it inherits what is known of its type and shape.
    if new_output.type is None:
        new_output.type = old_output.type
    if new_output.shape is None:
        new_output.shape = old_output.shape
    old_output.replace_all_uses_with(new_output, replace_graph_outputs=True)
    graph.remove(old_nodes, safe=True)
    if new_output.producer() in new_nodes or was_graph_output:  # a model output keeps its name
        new_output.name = name
