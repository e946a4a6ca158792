"""Malformed ONNX models for the fuzz test and benchmarks/fuzz_models.py: a small valid model (two
convs, h-swish, pooling) mutated in one of the ways real files go wrong, and the CLI run on each
in-process, sorted into accepted (exit 0), refused (one 'error:' line, exit 2) and crashed
(anything else: a traceback, another exit code)."""

from __future__ import annotations

import contextlib
import io
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MUTATIONS = ("truncated", "bit flips", "wrong dtype", "missing input", "extra input", "cycle", "huge or zero dim",
             "empty graph", "duplicate name", "unknown domain")
COMMANDS = ("inspect", "optimize", "quantize", "build")


def valid_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    initializers = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
                    numpy_helper.from_array(np.zeros(8, np.float32), "b"),
                    numpy_helper.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("HardSwish", ["c1"], ["h1"], name="hswish"),
             helper.make_node("Conv", ["h1", "w2"], ["c2"], name="conv2"),
             helper.make_node("GlobalAveragePool", ["c2"], ["pooled"], name="pool"),
             helper.make_node("Flatten", ["pooled"], ["logits"], name="flatten")]
    graph = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 8])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def mutated(model: onnx.ModelProto, rng: np.random.Generator) -> tuple[str, bytes]:
    """(mutation, the mutated model's bytes)."""
    kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = m.graph.node
    if kind == "truncated":
        raw = m.SerializeToString()
        return kind, raw[:int(rng.integers(0, len(raw)))]
    if kind == "bit flips":
        raw = bytearray(m.SerializeToString())
        for _ in range(int(rng.integers(1, 8))):
            raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        return kind, bytes(raw)
    if kind == "wrong dtype":
        tensor = m.graph.initializer[int(rng.integers(len(m.graph.initializer)))]
        tensor.data_type = int(rng.choice([TensorProto.INT8, TensorProto.DOUBLE, TensorProto.STRING, TensorProto.INT64, 0]))
        if rng.integers(2):
            m.graph.input[0].type.tensor_type.elem_type = int(rng.choice([TensorProto.INT8, TensorProto.UINT8, 0]))
    elif kind == "missing input":
        if rng.integers(2):
            del m.graph.input[:]
        else:
            nodes[int(rng.integers(len(nodes)))].input[0] = "nonexistent"
    elif kind == "extra input":
        m.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1, 4]))
        nodes[int(rng.integers(len(nodes)))].input.append("extra")
    elif kind == "cycle":
        nodes[0].input[0] = nodes[int(rng.integers(1, len(nodes)))].output[0]
    elif kind == "huge or zero dim":
        dim = m.graph.input[0].type.tensor_type.shape.dim[int(rng.integers(4))]
        dim.dim_value = int(rng.choice([0, 10**9, 2**40]))
    elif kind == "empty graph":
        del nodes[:]
    elif kind == "duplicate name":
        nodes[int(rng.integers(1, len(nodes)))].output[0] = nodes[0].output[0]
    elif kind == "unknown domain":
        nodes[int(rng.integers(len(nodes)))].domain = "com.unknown"
    return kind, m.SerializeToString()


def command_line(command: str, model: Path, work: Path) -> list[str]:
    out = work / f"{model.stem}-{command}"
    return {"inspect": ["inspect", str(model)],
            "optimize": ["optimize", str(model), "-o", f"{out}.onnx"],
            "quantize": ["quantize", str(model), "--calib", "synthetic:2", "-o", f"{out}.onnx"],
            "build": ["build", "--onnx", str(model), "--quant", "none", "-o", str(out)]}[command]


def run_cli(args: list[str]) -> tuple[object, str]:
    """(exit code, or 'traceback'; stdout + stderr) of the CLI run in this process."""
    from mnv3compile.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(args)
        except BaseException:  # noqa: BLE001 - what the fuzzing is looking for
            traceback.print_exc()
            code = "traceback"
    return code, out.getvalue()


def fuzz(cases: int, seed: int, work: Path, commands=COMMANDS) -> dict:
    """Run ``commands`` on ``cases`` mutated models: outcome counts per command, the slowest
    case's seconds, and the first few crashes (mutation, command, output)."""
    rng = np.random.default_rng(seed)
    base = valid_model()
    outcomes = {command: Counter() for command in commands}
    crashes, slowest = [], 0.0
    for index in range(cases):
        kind, data = mutated(base, rng)
        path = work / f"case{index}.onnx"
        path.write_bytes(data)
        for command in commands:
            started = time.perf_counter()
            code, output = run_cli(command_line(command, path, work))
            slowest = max(slowest, time.perf_counter() - started)
            if code == 0 and "Traceback" not in output:
                outcomes[command]["accepted"] += 1
            elif code == 2 and "Traceback" not in output and output.rstrip().splitlines()[-1].startswith("error: "):
                outcomes[command]["refused"] += 1
            else:
                outcomes[command]["crashed"] += 1
                if len(crashes) < 5:
                    crashes.append((kind, command, output[-2000:]))
    return {"outcomes": outcomes, "slowest_s": slowest, "crashes": crashes}
