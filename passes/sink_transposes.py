"""sink_transposes: move layout Transposes down through layout-free ops until they meet their
inverse and cancel, so a channels-last (TF/Keras) export keeps one layout change at its input.

tf2onnx writes a Keras model's NHWC convs as ``Transpose(0,3,1,2) -> Conv -> Transpose(0,2,3,1)``
and leaves the activation, residual Add, squeeze-excite Mul and pooling between two of them in
NHWC (a MobileNetV3Small keeps 106 Transposes). A Transpose feeding an op that does not care about
layout is moved below it: the op reads the untransposed tensor (a constant operand is transposed
once here, a Pad's pads and a ReduceMean's axes are permuted), and one Transpose of its output
replaces it for the op's readers. Two Transposes in a row become one, or none when they cancel;
one that only moves size-1 axes in front of a Reshape is dropped (same bytes in the same order).
onnxruntime's transpose optimizer is the reference behaviour. Runs until nothing moves; a graph
where that ends with more Transposes than it began with (a Transpose that also feeds an op that
is not layout-free is duplicated, not removed) is given back unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common as ir_passes

from mnv3compile.passes.base import GraphPass
from mnv3compile.passes.graph_edit import add_initializer, constant_array, reduce_axes
from mnv3compile.passes.rules import PassStats

UNARY = {"Relu", "HardSwish", "HardSigmoid", "Sigmoid", "Clip", "LeakyRelu", "Tanh", "Neg", "Abs", "Exp", "Elu",
         "Softplus", "Identity"}  # elementwise in their first input; other inputs are scalars
BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min"}  # elementwise with broadcasting
MAX_SWEEPS = 200


def _perm(node: ir.Node) -> tuple[int, ...] | None:
    perm = node.attributes.get_ints("perm", None)
    return tuple(int(p) for p in perm) if perm is not None else None


def _transposed(value: ir.Value | None) -> tuple[ir.Value, tuple[int, ...]] | None:
    """(x, perm) when ``value`` is Transpose(x, perm) with an explicit perm."""
    producer = value.producer() if value is not None else None
    if producer is None or producer.op_type != "Transpose" or _perm(producer) is None:
        return None
    return producer.inputs[0], _perm(producer)


def _is_scalar(value: ir.Value) -> bool:
    array = constant_array(value)
    return array is not None and array.size == 1


def _data_inputs(node: ir.Node) -> list[int]:
    return [0] if node.op_type in UNARY | {"ReduceMean", "Pad"} else list(range(len(node.inputs)))


def _sinkable(node: ir.Node) -> tuple[int, ...] | None:
    """The perm to move below ``node``, when every data input is Transpose(., perm) or a constant
    and ``node`` is layout-free for it; else None."""
    if node.op_type not in UNARY | BINARY | {"ReduceMean", "Pad"} or len(node.outputs) != 1:
        return None
    perms = set()
    for index in _data_inputs(node):
        value = node.inputs[index]
        found = _transposed(value)
        if found is not None:
            perms.add(found[1])
        elif value is None or constant_array(value) is None:
            return None
    if len(perms) != 1:
        return None
    (perm,) = perms
    if node.op_type in UNARY and not all(v is None or _is_scalar(v) for v in node.inputs[1:]):
        return None
    if node.op_type in BINARY and any(constant_array(node.inputs[i]) is not None
                                      and constant_array(node.inputs[i]).ndim > len(perm) for i in _data_inputs(node)):
        return None
    if node.op_type == "ReduceMean" and (node.attributes.get_int("keepdims", 1) != 1 or reduce_axes(node) is None):
        return None
    if node.op_type == "Pad" and (len(node.inputs) > 3 and node.inputs[3] is not None
                                  or constant_array(node.inputs[1]) is None):
        return None
    return perm


def _sink(graph: ir.Graph, node: ir.Node, perm: tuple[int, ...]) -> None:
    """``node`` reads the untransposed inputs; a Transpose(perm) of its output serves its readers."""
    inverse = tuple(int(i) for i in np.argsort(perm))
    rank = len(perm)
    for index in _data_inputs(node):
        value = node.inputs[index]
        found = _transposed(value)
        if found is not None:
            node.replace_input_with(index, found[0])
            continue
        array = constant_array(value)
        if array.size > 1:  # op(T(x), C) == T(op(x, T^-1(C))), C aligned to the rank as broadcasting does
            aligned = array.reshape((1,) * (rank - array.ndim) + array.shape)
            node.replace_input_with(index, add_initializer(graph, np.ascontiguousarray(aligned.transpose(inverse)),
                                                           f"{value.name}/untransposed"))
    if node.op_type == "ReduceMean":
        axes = [perm[a % rank] for a in reduce_axes(node)]
        if len(node.inputs) > 1 and node.inputs[1] is not None:
            node.replace_input_with(1, add_initializer(graph, np.array(axes, np.int64), f"{node.name}/axes"))
        else:
            node.attributes["axes"] = ir.AttrInt64s("axes", axes)
    if node.op_type == "Pad":
        pads = constant_array(node.inputs[1]).reshape(2, rank)
        untransposed = np.empty_like(pads)
        untransposed[:, list(perm)] = pads
        node.replace_input_with(1, add_initializer(graph, untransposed.reshape(-1), f"{node.name}/pads"))
    output = node.outputs[0]
    uses = list(output.uses())
    was_output = [i for i, v in enumerate(graph.outputs) if v is output]
    after = ir.node("Transpose", [output], attributes={"perm": list(perm)}, name=f"{node.name}/sunk_transpose")
    graph.insert_after(node, [after])
    after.outputs[0].type, after.outputs[0].shape = output.type, output.shape  # the old layout's
    if output.shape is not None and len(output.shape) == rank:
        untransposed_shape = [None] * rank
        for axis, dim in zip(perm, output.shape):
            untransposed_shape[axis] = dim
        output.shape = ir.Shape(untransposed_shape)
    else:
        output.shape = None
    for user, index in uses:
        user.replace_input_with(index, after.outputs[0])
    for position in was_output:
        after.outputs[0].name, output.name = output.name, f"{output.name}/before_transpose"
        graph.outputs[position] = after.outputs[0]


def _merge(graph: ir.Graph, node: ir.Node) -> bool:
    """Transpose(Transpose(x, p), q) -> Transpose(x, p.q), or x when that is the identity."""
    found = _transposed(node.inputs[0])
    if node.op_type != "Transpose" or found is None or _perm(node) is None:
        return False
    source, first = found
    combined = [first[q] for q in _perm(node)]
    if combined == sorted(combined):
        return _bypass(graph, node, source)
    node.replace_input_with(0, source)
    node.attributes["perm"] = ir.AttrInt64s("perm", combined)
    return True


def _bypass(graph: ir.Graph, node: ir.Node, source: ir.Value) -> bool:
    """Every reader of ``node``'s output reads ``source`` instead; not when it is a graph output."""
    if any(v is node.outputs[0] for v in graph.outputs):
        return False
    for user, index in list(node.outputs[0].uses()):
        user.replace_input_with(index, source)
    return True


def _same_bytes(node: ir.Node) -> bool:
    """A Transpose that moves only size-1 axes (the order of the others kept) only relabels shape."""
    shape = node.inputs[0].shape
    perm = _perm(node)
    if node.op_type != "Transpose" or shape is None or perm is None or not all(isinstance(d, int) for d in shape):
        return False
    kept = [axis for axis in perm if shape[axis] != 1]
    return kept == sorted(kept)


def _drop_before_reshape(graph: ir.Graph, node: ir.Node) -> bool:
    uses = list(node.outputs[0].uses())
    if not uses or not _same_bytes(node) or any(user.op_type != "Reshape" or index != 0 for user, index in uses):
        return False
    if any(constant_array(user.inputs[1]) is None or 0 in constant_array(user.inputs[1]) for user, _ in uses):
        return False  # a 0 in the target shape copies the input's dimension, which the transpose changed
    return _bypass(graph, node, node.inputs[0])


def _transposes(model: ir.Model) -> int:
    return sum(node.op_type == "Transpose" for node in model.graph)


def run(model: ir.Model) -> tuple[ir.Model, PassStats]:
    if not _transposes(model):
        return model, PassStats()  # nothing to sink (every NCHW export): no copy of the weights to make
    untouched = ir.from_proto(ir.to_proto(model))
    graph = model.graph
    stats = PassStats()
    for _ in range(MAX_SWEEPS):
        moved = 0
        for node in list(graph):
            if node.graph is not graph:
                continue
            perm = _sinkable(node)
            if perm is not None:
                _sink(graph, node, perm)
                moved += 1
            elif _merge(graph, node) or _drop_before_reshape(graph, node):
                moved += 1
        ir_passes.RemoveUnusedNodesPass()(model)
        stats.matched += moved
        stats.rewritten += moved
        if not moved:
            break
    if _transposes(model) > _transposes(untouched):
        return untouched, PassStats(stats.matched, 0, {"moving them would add Transposes": 1})
    return model, stats


PASS = GraphPass("sink_transposes", "layout Transposes moved below layout-free ops until they cancel", run)
