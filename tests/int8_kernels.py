"""Per-kernel oracle for int8 bundles: every quantized group of a QDQ model, cut out as its own ONNX
model, compiled alone by our TVM backend (kernel templates applied, as build does) and fed the int8 tensors that onnxruntime computes for
the whole model, compared step by step with onnxruntime's int8 output of the same group."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import onnx
from onnx.utils import Extractor

from mnv3compile.quant.calibrate import session_with_outputs


@dataclass
class KernelResult:
    output: str  # the group's int8 output tensor
    ops: list[str]  # the float ops of the group (what the kernel computes)
    max_steps: int
    share_differing: float
    kernel_names: list[str]


def group_inputs(model: onnx.ModelProto, quantize: onnx.NodeProto) -> list[str]:
    """The int8 tensors (outputs of QuantizeLinear) that the group behind ``quantize`` reads."""
    producer = {o: n for n in model.graph.node for o in n.output}
    found, stack, seen = [], [quantize.input[0]], set()
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        if node.op_type == "DequantizeLinear":
            source = producer.get(node.input[0])
            if source is not None and source.op_type == "QuantizeLinear":
                found.append(node.input[0])
            continue
        stack.extend(i for i in node.input if i)
    return list(dict.fromkeys(found))


def compare_kernels(model: onnx.ModelProto, feeds: dict[str, np.ndarray], lowering: str = "integer"):
    """One KernelResult per quantized group (the network input's quantize excluded)."""
    import tvm
    from tvm import relax

    from mnv3compile.schedules.kernels.isa import isa_of
    from mnv3compile.schedules.kernels.dispatch import apply_templates
    from mnv3compile.targets.presets import preset
    from mnv3compile.tvm.build import tvm_target
    from mnv3compile.tvm.frontend import import_onnx
    from mnv3compile.relax.int8_lowering import lower_to_integer
    from mnv3compile.relax.pipeline import kernel_names, run_pipeline

    model = onnx.shape_inference.infer_shapes(model)
    quantizes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    int8_tensors = [n.output[0] for n in quantizes]
    oracle = dict(zip(int8_tensors, session_with_outputs(model, int8_tensors).run(int8_tensors, feeds)))
    target = tvm_target(preset("host"))
    results = []
    for quantize in quantizes:
        inputs = group_inputs(model, quantize)
        if not inputs:
            continue  # the network input, quantized once
        kernel = Extractor(model).extract_model(inputs, [quantize.output[0]])
        with warnings.catch_warnings():  # the importer renames dotted tensor names, loudly
            warnings.simplefilter("ignore", UserWarning)
            module, _ = import_onnx(kernel)
        if lowering == "integer":
            module, _ = lower_to_integer(module)
        module, _ = apply_templates(run_pipeline(module, target), isa_of(target))  # as build schedules them
        vm = relax.VirtualMachine(tvm.compile(module, target), tvm.cpu())
        got = vm["main"](*[tvm.runtime.tensor(oracle[name]) for name in inputs])
        got = got.numpy() if hasattr(got, "numpy") else got[0].numpy()
        steps = np.abs(got.astype(np.int32) - oracle[quantize.output[0]].astype(np.int32))
        ops = [n.op_type for n in kernel.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
        results.append(KernelResult(quantize.output[0], ops, int(steps.max()), float((steps > 0).mean()),
                                    kernel_names(module)))
    return results
