"""mnv3compile: a model compiler for MobileNetV3 on phones.

The public Python API is the names in ``__all__`` (and the plugin surfaces
``mnv3compile.passes.rule_set``, ``mnv3compile.tvm.pipeline``, ``mnv3compile.tvm.IntegerLowering``,
``mnv3compile.schedules.KernelTemplates``); they follow semantic versioning from 0.2.0 on
(README, "Python API"). A session::

    import mnv3compile as m3
    bundle = m3.build("small", target="host", quant="int8", calibration="synthetic:16")
    (logits,) = bundle.run(x)
    print(bundle.bench(vs_onnxruntime=True).rows)

Names load on first use, so ``import mnv3compile`` stays light (no TVM, no onnxruntime).
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mnv3compile")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# name -> (module, attribute): the one list of what is public.
_PUBLIC = {
    # the stages, as functions (mnv3compile/api.py)
    "export": ("mnv3compile.api", "export"),
    "load_onnx": ("mnv3compile.api", "load_onnx"),
    "analyze": ("mnv3compile.api", "analyze"),
    "optimize": ("mnv3compile.api", "optimize"),
    "optimize_with_report": ("mnv3compile.api", "optimize_with_report"),
    "explain": ("mnv3compile.api", "explain"),
    "quantize": ("mnv3compile.api", "quantize"),
    "evaluation_samples": ("mnv3compile.api", "evaluation_samples"),
    "build": ("mnv3compile.api", "build"),
    "tune": ("mnv3compile.api", "tune"),
    "bench": ("mnv3compile.api", "bench"),
    "target_presets": ("mnv3compile.api", "target_presets"),
    # what they return and take
    "Bundle": ("mnv3compile.bundle", "Bundle"),
    "BuildReport": ("mnv3compile.pipeline", "BuildReport"),
    "BenchResult": ("mnv3compile.benchmark", "BenchResult"),
    "QuantizedModel": ("mnv3compile.quant", "QuantizedModel"),
    "QuantizeSettings": ("mnv3compile.quant", "QuantizeSettings"),
    # errors: bad input, explained in the message
    "UserError": ("mnv3compile.errors", "UserError"),
    "NotCanonicalError": ("mnv3compile.errors", "NotCanonicalError"),
    "DynamicShapeError": ("mnv3compile.errors", "DynamicShapeError"),
    # the choices some arguments take
    "ZOO_MODELS": ("mnv3compile.zoo.spec", "MODEL_NAMES"),
    "PASSES": ("mnv3compile.passes.registry", "PASSES_BY_NAME"),
    "PREPROCESSING": ("mnv3compile.quant.preprocess", "PRESETS"),
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mnv3compile' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(import_module(module), attribute)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
