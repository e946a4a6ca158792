"""Our passes in a user's Relax pipeline vs ``mnv3compile build``: latency, interleaved in one process.

Builds MobileNetV3-Small (int8 and fp32) with ``build``, then compiles the same networks the way a
TVM user would with our passes (tests/test_tvm_plugin.py checks they are bit-identical):

- int8: TVM's ``from_onnx`` of the bundle's QDQ model -> ``mnv3compile.tvm.pipeline(target)`` ->
  ``tvm.compile`` (the same machine code as the bundle's library);
- fp32 (with ``--torch``): the torch reference model (tests/torch_reference.py) with the zoo's
  weights -> ``torch.export`` -> TVM's ``from_exported_program`` -> the same pipeline (h-swish
  written as the ONNX import writes it, so outputs are bit-identical; the kernels differ a little:
  torch's h-sigmoid fuses into the squeeze-excite conv, 52 kernels where the bundle has 59).

Each runs from a ``relax.VirtualMachine`` with one reused input tensor, as ``BundleRunner`` runs a
bundle; all are called in turn, round after round, in a new random order each round
(mnv3compile.benchmark.measure), on one thread. Prints a table; ratio = median / the bundle's.

    python benchmarks/plugin_pipeline.py [--resolution 224] [--runs 300] [--torch]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def host_target():
    import tvm
    from tvm.target import codegen

    cpu = os.environ.get("MNV3COMPILE_HOST_CPU") or codegen.llvm_get_system_cpu()
    return tvm.target.Target({"kind": "llvm", "num-cores": 1, "mcpu": cpu})


def vm_call(executable, x: np.ndarray):
    """A call of ``executable``'s main on ``x``, as BundleRunner calls a bundle (one input tensor
    reused, the output read back to numpy)."""
    import tvm
    from tvm import relax

    main = relax.VirtualMachine(executable, tvm.cpu())["main"]
    tensor = tvm.runtime.empty(x.shape, "float32", tvm.cpu())

    def call():
        tensor.copyfrom(x)
        return main(tensor).numpy()

    return call


def plugin_from_onnx(bundle: Path, target):
    import onnx
    import tvm
    from tvm.relax.frontend.onnx import from_onnx

    import mnv3compile.tvm

    module = mnv3compile.tvm.pipeline(target)(from_onnx(onnx.load(str(bundle / "small.int8.onnx"))))
    return tvm.compile(module, target), len(kernels_of(module))


def plugin_from_torch(spec, target):
    import torch
    import tvm
    from torch import nn
    from tvm.relax.frontend.torch import from_exported_program

    import mnv3compile.tvm
    from mnv3compile.zoo import random_state_dict

    sys.path.insert(0, str(ROOT / "tests"))
    from torch_reference import reference_model

    class HardSwishAsOnnx(nn.Module):
        def forward(self, x):
            return x * (torch.clamp(x + 3.0, 0.0, 6.0) / 6.0)

    net = reference_model(spec)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in random_state_dict(spec).items()})
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Hardswish):
                setattr(module, name, HardSwishAsOnnx())
    program = torch.export.export(net, (torch.zeros(*spec.input_shape),))
    module = mnv3compile.tvm.pipeline(target)(from_exported_program(program, unwrap_unit_return_tuple=True))
    return tvm.compile(module, target), len(kernels_of(module))


def kernels_of(module) -> list[str]:
    from mnv3compile.relax.pipeline import kernel_names

    return kernel_names(module)


def compiled_pairs(spec, work: Path, with_torch: bool) -> list[tuple]:
    """(bundle contender, plugin contender) for int8 (and fp32 from torch): built into ``work``."""
    from mnv3compile.benchmark import Contender
    from mnv3compile.pipeline import BuildRequest, build
    from mnv3compile.runner import BundleRunner
    from mnv3compile.targets.presets import preset
    from mnv3compile.zoo import build_model

    target = host_target()
    x = np.random.default_rng(0).standard_normal(spec.input_shape).astype(np.float32)
    pairs = []
    for quant in ("int8", *(("none",) if with_torch else ())):
        print(f"building {quant} ...", file=sys.stderr, flush=True)
        result = build(BuildRequest(target=preset("host"), output=work / quant, name="small", model=build_model(spec),
                                    quant=quant))
        runner = BundleRunner(result.bundle)
        label = "int8" if quant == "int8" else "fp32"
        if quant == "int8":
            executable, kernels = plugin_from_onnx(result.bundle, target)
            how = "from_onnx -> mnv3compile.tvm.pipeline -> tvm.compile"
        else:
            executable, kernels = plugin_from_torch(spec, target)
            how = "torch.export -> from_exported_program -> mnv3compile.tvm.pipeline -> tvm.compile"
        plugin = vm_call(executable, x)
        same = np.array_equal(plugin(), runner(x))
        pairs.append((Contender(f"bundle {label}", "bundle", f"mnv3compile build, {len(result.report.kernels)} kernels",
                                lambda runner=runner: runner(x)),
                      Contender(f"plugin {label}", "plugin", f"{how}, {kernels} kernels, "
                                f"outputs {'bit-identical' if same else 'DIFFER'}", plugin)))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--budget", type=float, default=180, help="seconds of measuring at most")
    parser.add_argument("--torch", action="store_true", help="also the fp32 torch.export path")
    parser.add_argument("--work", type=Path, default=None, help="where the bundles go (default: a temporary folder)")
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = "1"  # read when TVM's thread pool starts

    from mnv3compile.benchmark import cpu_name, measure, rows
    from mnv3compile.zoo import build_spec

    spec = build_spec("small", 1.0, args.resolution)
    with contextlib.nullcontext(args.work) if args.work else tempfile.TemporaryDirectory(prefix="plugin-bench-") as work:
        pairs = compiled_pairs(spec, Path(work), args.torch)
    entries = [c for pair in pairs for c in pair]
    print(f"measuring {len(entries)} contenders interleaved ...", file=sys.stderr, flush=True)
    measure(entries, args.runs, args.budget)
    table = {row.name: row for row in rows(entries)}
    print(f"MobileNetV3-Small {args.resolution}x{args.resolution}, 1 thread, {cpu_name()}, "
          f"{len(entries[0].times_ms)} interleaved rounds")
    print("| contender | how | median ms | p10 | p90 | plugin / bundle |")
    print("|---|---|---|---|---|---|")
    for bundle, plugin in pairs:
        b, p = table[bundle.name], table[plugin.name]
        print(f"| {b.name} | {bundle.detail} | {b.median_ms:.4f} | {b.p10_ms:.4f} | {b.p90_ms:.4f} | |")
        print(f"| {p.name} | {plugin.detail} | {p.median_ms:.4f} | {p.p10_ms:.4f} | {p.p90_ms:.4f} | "
              f"{p.median_ms / b.median_ms:.3f} |")


if __name__ == "__main__":
    main()
