"""Write the quantized model: QuantizeLinear/DequantizeLinear around every group output, int8
weights (per output channel, depthwise included) and int32 biases behind DequantizeLinear.

The result is a standard QDQ model: onnxruntime runs it, and the TVM backend reads each
``DQ -> group -> Q`` as one integer kernel whose requantization is s_in * s_w / s_out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from mnv3compile.passes.graph_edit import add_initializer, constant_array
from mnv3compile.quant.adaround import adaround
from mnv3compile.quant.bias_correction import ConvGeometry, corrected_bias, output_shift
from mnv3compile.quant.plan import SAME_AS_INPUT, UNIT_INTERVAL, WEIGHT_INPUTS, Group, data_inputs
from mnv3compile.quant.qparams import (UNIT_INTERVAL as UNIT_INTERVAL_QPARAMS, QParams, activation_qparams,
                                       quantize_bias, quantize_weight, weight_qmax, weight_scales)


@dataclass
class QuantRecord:
    """Everything the sidecar JSON says about the quantized model."""

    activations: dict[str, dict] = field(default_factory=dict)
    weights: dict[str, dict] = field(default_factory=dict)
    biases: dict[str, dict] = field(default_factory=dict)
    dequantized: dict[str, str] = field(default_factory=dict)  # float tensor -> its DQ output
    # One entry per integer kernel: its kind, node names and the (quantized) output it produces.
    groups: list[dict] = field(default_factory=list)
    corrected_biases: int = 0  # layers whose bias took the weights' rounding error out
    adarounded: int = 0  # layers whose weights AdaRound rounded
    float_outputs: list[str] = field(default_factory=list)  # model outputs left float (--keep-float-output)


def _insert_qdq(graph: ir.Graph, value: ir.Value, qp: QParams, after: ir.Node | None) -> ir.Value:
    """Q then DQ of ``value``; every former reader reads the DQ output instead."""
    base = value.name
    scale = add_initializer(graph, np.array(qp.scale, np.float32), f"{base}.scale")
    zero = add_initializer(graph, np.array(qp.zero_point, np.int8), f"{base}.zero_point")
    readers = list(value.uses())
    q = ir.node("QuantizeLinear", [value, scale, zero], name=f"{base}/quantize")
    dq = ir.node("DequantizeLinear", [q.outputs[0], scale, zero], name=f"{base}/dequantize")
    q.outputs[0].name = f"{base}.int8"
    dq.outputs[0].name = f"{base}.dq"
    dq.outputs[0].type, dq.outputs[0].shape = value.type, value.shape
    if after is None:
        graph.insert_before(next(iter(graph)), [q, dq])
    else:
        graph.insert_after(after, [q, dq])
    for user, index in readers:
        user.replace_input_with(index, dq.outputs[0])
    if value.is_graph_output():
        position = list(graph.outputs).index(value)
        graph.outputs[position] = dq.outputs[0]
        dq.outputs[0].name, value.name = base, f"{base}.float"
    return dq.outputs[0]


def _dequantize_constant(graph: ir.Graph, before: ir.Node, q_array: np.ndarray, scales: np.ndarray,
                         zero: np.ndarray, name: str, axis: int | None) -> ir.Value:
    # A constant several layers share (tf2onnx deduplicates equal ones) gets a copy per layer, each
    # quantized with that layer's scales: names made unique as the initializers' are (name_2, ...).
    q_value = add_initializer(graph, q_array, f"{name}.quantized")
    name += q_value.name.removeprefix(f"{name}.quantized")
    s_value = add_initializer(graph, scales, f"{name}.scale")
    z_value = add_initializer(graph, zero, f"{name}.zero_point")
    attrs = {"axis": axis} if axis is not None and scales.ndim == 1 and scales.size > 1 else {}
    node = ir.node("DequantizeLinear", [q_value, s_value, z_value], attributes=attrs, name=f"{name}/dequantize")
    node.outputs[0].name = f"{name}.dq"
    graph.insert_before(before, [node])
    return node.outputs[0]


# Layers bias correction and AdaRound know (a transposed conv's taps reach its outputs unevenly).
CORRECTED = ("Conv", "Gemm", "MatMul")


def layer_key(node: ir.Node) -> str:
    return node.name or node.inputs[1].name


def conv_geometry(node: ir.Node) -> ConvGeometry | None:
    """A 2-D Conv's taps, or None where they are not known here (a weight that is no constant, or
    padding that ``auto_pad`` decides): bias correction then leaves the layer alone."""
    weight = node.inputs[1].const_value
    if weight is None or len(weight.shape) != 4 or node.attributes.get_string("auto_pad", "NOTSET") != "NOTSET":
        return None
    ints = lambda name, default: tuple(node.attributes.get_ints(name, default))  # noqa: E731
    return ConvGeometry((int(weight.shape[2]), int(weight.shape[3])), ints("strides", (1, 1)),
                        ints("pads", (0, 0, 0, 0)), ints("dilations", (1, 1)))


def _weight_axis(node: ir.Node) -> int:
    if node.op_type == "Gemm":
        return 0 if node.attributes.get_int("transB", 0) else 1
    return WEIGHT_INPUTS[node.op_type][1]


def _quantize_weights(graph: ir.Graph, node: ir.Node, input_qp: QParams, record: QuantRecord, qmax: int,
                      input_mean: np.ndarray | None = None, input_moment: np.ndarray | None = None) -> None:
    """Per-channel int8 weight (in -qmax..qmax) and int32 bias of a Conv, Gemm or MatMul; with the
    input's per-channel mean, the bias is corrected for the weights' rounding (bias_correction);
    with the second moment of its taps, the weights are rounded by AdaRound (adaround)."""
    weight_value = node.inputs[1]
    weight = constant_array(weight_value)
    if weight is None:
        return  # runtime weights: quantized as activations by their producer's group
    axis = _weight_axis(node)
    scales = _bias_fitting(weight_scales(weight.astype(np.float32), axis, qmax), node, input_qp.scale)
    q = quantize_weight(weight, scales, axis, qmax)
    transposed_input = node.op_type == "Gemm" and node.attributes.get_int("transA", 0)
    if input_moment is not None and not transposed_input:
        q = _adarounded(weight, scales, axis, input_moment, qmax)
        record.adarounded += 1
    name = weight_value.name or f"{node.name}.weight"
    dequantized = _dequantize_constant(graph, node, q, scales, np.zeros(scales.shape, np.int8), name, axis)
    node.replace_input_with(1, dequantized)
    record.weights[dequantized.name.removesuffix(".dq")] = {"node": node.name, "axis": axis, "dtype": "int8",
                                                            "scales": scales.tolist()}
    bias_index = 2
    shift = _bias_shift(node, weight, q, scales, axis, input_mean)
    if shift is not None and (len(node.inputs) <= bias_index or node.inputs[bias_index] is None):
        if node.op_type == "MatMul":
            shift = None  # no bias input to correct
        else:
            node.resize_inputs(bias_index + 1)
            node.replace_input_with(bias_index, add_initializer(graph, np.zeros(scales.size, np.float32),
                                                                f"{node.name}.bias"))
    if len(node.inputs) > bias_index and node.inputs[bias_index] is not None:
        bias = constant_array(node.inputs[bias_index])
        if bias is not None and bias.size == scales.size:
            bias = bias.reshape(-1)
            if shift is not None:
                bias = corrected_bias(bias, shift)
                record.corrected_biases += 1
            q_bias, bias_scales = quantize_bias(bias, input_qp.scale, scales)
            bias_name = node.inputs[bias_index].name or f"{node.name}.bias"
            dequantized = _dequantize_constant(graph, node, q_bias, bias_scales, np.zeros(bias_scales.shape, np.int32),
                                               bias_name, 0)
            node.replace_input_with(bias_index, dequantized)
            record.biases[dequantized.name.removesuffix(".dq")] = {"node": node.name, "dtype": "int32",
                                                                   "scales": bias_scales.tolist()}


BIAS_LIMIT = 2.0**30  # int32 with room for the zero point's weight sum that the kernel folds in


def _bias_fitting(scales: np.ndarray, node: ir.Node, input_scale: float) -> np.ndarray:
    """Weight scales widened where the int32 bias (scale s_in * s_w) would overflow: a channel of
    near-zero weights and a large bias (PP-LCNetV3's folded affine shifts) gets coarser weights,
    not a saturated bias (onnxruntime's quantizer does the same)."""
    bias = constant_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if bias is None or bias.size != scales.size:
        return scales
    needed = np.abs(bias.reshape(-1).astype(np.float64)) / (np.float64(input_scale) * BIAS_LIMIT)
    return np.maximum(scales, needed).astype(np.float32)


def _adarounded(weight: np.ndarray, scales: np.ndarray, axis: int, moment: np.ndarray, qmax: int) -> np.ndarray:
    """``weight`` rounded by AdaRound, in its own layout: outputs along ``axis``; a conv's
    (F, C/G, kh, kw) reads as G groups of F/G outputs over C/G x kh x kw taps, as ``moment``."""
    groups = moment.shape[0]
    rows = np.moveaxis(weight, axis, 0)
    grouped = rows.reshape(groups, rows.shape[0] // groups, -1)
    q = adaround(grouped, scales.reshape(groups, -1).astype(np.float64), moment, qmax)
    return np.moveaxis(q.reshape(rows.shape), 0, axis)


def _bias_shift(node: ir.Node, weight: np.ndarray, q: np.ndarray, scales: np.ndarray, axis: int,
                input_mean: np.ndarray | None) -> np.ndarray | None:
    transposed_input = node.op_type == "Gemm" and node.attributes.get_int("transA", 0)
    if input_mean is None or node.op_type not in CORRECTED or transposed_input:
        return None
    shape = [1] * weight.ndim
    shape[axis] = -1
    error = q.astype(np.float64) * scales.reshape(shape) - weight
    group = node.attributes.get_int("group", 1) if node.op_type == "Conv" else 1
    expected_inputs = weight.shape[1] * group if node.op_type == "Conv" else weight.shape[1 - axis]
    if input_mean.shape[0] != expected_inputs:
        return None
    return output_shift(node.op_type, error, input_mean, group, axis)


def _quantize_constant_input(graph: ir.Graph, node: ir.Node, index: int, record: QuantRecord) -> None:
    array = constant_array(node.inputs[index]).astype(np.float32)
    qp = activation_qparams(float(array.min()), float(array.max()), symmetric=True)
    q = np.clip(np.round(array / qp.scale), -127, 127).astype(np.int8)
    name = node.inputs[index].name or f"{node.name}.const{index}"
    dequantized = _dequantize_constant(graph, node, q, np.array(qp.scale, np.float32), np.array(0, np.int8), name, None)
    node.replace_input_with(index, dequantized)
    record.weights[dequantized.name.removesuffix(".dq")] = {"node": node.name, "axis": None, "dtype": "int8",
                                                            "scales": [qp.scale]}


def quantize_graph(model: ir.Model, groups: list[Group], ranges: dict[str, tuple[float, float]],
                   symmetric: bool = False, weight_bits: int = 8,
                   input_means: dict[str, np.ndarray] | None = None,
                   input_moments: dict[str, np.ndarray] | None = None) -> QuantRecord:
    """Rewrite ``model`` in place into QDQ form. ``ranges`` maps calibrated tensor names to (lo, hi).
    Conv/Gemm/MatMul weights use ``weight_bits`` (8, or 7: stored as int8 in -63..63); a layer
    with an entry in ``input_means`` (by ``layer_key``) gets its bias corrected (bias_correction),
    one in ``input_moments`` its weights rounded by AdaRound."""
    input_means, input_moments = input_means or {}, input_moments or {}
    graph = model.graph
    record = QuantRecord()
    qparams: dict[str, QParams] = {}

    def remember(value: ir.Value, qp: QParams, rule: str) -> None:
        qparams[value.name] = qp
        record.activations[value.name] = {**qp.to_json(), "rule": rule}

    inputs = [v for v in graph.inputs if v.const_value is None]
    for value in inputs:
        remember(value, activation_qparams(*ranges[value.name], symmetric), "calibrated")
    # Weights first (their bias scale needs the group's input scale, known before any rewiring).
    for group in groups:
        head = group.head
        if head.op_type in ("Conv", "Gemm", *WEIGHT_INPUTS):
            source = head.inputs[0].name
            if source not in qparams:
                producer = next(g for g in groups if g.output.name == source)
                qparams[source] = _output_qparams(producer, ranges, qparams, symmetric)
            _quantize_weights(graph, head, qparams[source], record, weight_qmax(weight_bits),
                              input_means.get(layer_key(head)), input_moments.get(layer_key(head)))
        if len(group.nodes) == 1:  # a chain's own constants (the 3, 0, 6, 1/6 of h-sigmoid) define it
            node = group.head
            for index, value in data_inputs(node):
                if value.const_value is not None and node.op_type in ("Add", "Sub", "Mul", "Min", "Concat"):
                    _quantize_constant_input(graph, node, index, record)
        qp = _output_qparams(group, ranges, qparams, symmetric)
        remember(group.output, qp, group.range_rule)
        record.groups.append({"kind": group.kind, "nodes": [n.name for n in group.nodes], "output": group.output.name})
    for value in inputs:
        dq = _insert_qdq(graph, value, qparams[value.name], None)
        record.dequantized[value.name] = dq.name
    for group in groups:
        name = group.output.name
        dq = _insert_qdq(graph, group.output, qparams[name], group.nodes[-1])
        record.dequantized[name] = dq.name
    return record


def _output_qparams(group: Group, ranges, qparams: dict[str, QParams], symmetric: bool) -> QParams:
    if group.output.name in qparams:
        return qparams[group.output.name]
    if group.range_rule == UNIT_INTERVAL:
        return UNIT_INTERVAL_QPARAMS
    if group.range_rule == SAME_AS_INPUT:
        source = data_inputs(group.head)[0][1].name
        return qparams[source]
    return activation_qparams(*ranges[group.output.name], symmetric)
