"""Graph edits the passes, the quantizer and cleanup share on onnx_ir: constants read as arrays,
new initializers under unused names, a subgraph swapped for another. Matching lives in
onnxscript's rewriter (``passes/rules.py``); these are what it has no public helper for.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The numpy array behind a constant value (initializer), or None when it is not constant."""
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def scalar_close(value: ir.Value | None, target: float, rtol: float = 1e-5) -> bool:
    """A constant whose every element is ``target`` (relative tolerance ``rtol``)."""
    array = constant_array(value)
    if array is None or array.size == 0 or not np.issubdtype(array.dtype, np.floating):
        return False
    return bool(np.allclose(array, target, rtol=rtol, atol=rtol * abs(target) + 1e-12))


def reduce_axes(node: ir.Node) -> list[int] | None:
    """The axes a Reduce* node names (its ``axes`` input from opset 18, or attribute before), as
    given (maybe negative); None when they are not constant or not given (all axes)."""
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = constant_array(node.inputs[1])
        return None if axes is None else [int(a) for a in axes.reshape(-1)]
    axes = node.attributes.get_ints("axes", None)
    return None if axes is None else [int(a) for a in axes]


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
