"""Keras MobileNetV3Small/Large (random weights) exported to ONNX by tf2onnx, as a user of
TensorFlow gets them: channels-last input (1 x 224 x 224 x 3), TF's op spellings.

TensorFlow is heavy and pins numpy < 2, so it lives in a venv of its own, outside the project's:

    python3 -m venv ~/.cache/mnv3compile/tfenv
    ~/.cache/mnv3compile/tfenv/bin/pip install "tensorflow-cpu==2.15.1" "tf2onnx==1.16.1" "numpy<2"
    ~/.cache/mnv3compile/tfenv/bin/python benchmarks/keras_models.py [OUT_DIR]

writes OUT_DIR/keras_mobilenetv3_{small,large}.onnx (default ~/.cache/mnv3compile/keras): opset 17,
``weights=None`` (seeded), ``include_preprocessing=False`` so the input is the network's own.
TensorFlow 2.15 is the last with Keras 2, which tf2onnx 1.16 converts.

With the zoo's weights: the same architecture (paper Table 2) with the parameters of our zoo Small
(random, seed 0), so that int8 accuracy compares the exporters' spellings and not two random draws:

    .venv/bin/python benchmarks/keras_models.py --dump-zoo small ZOO.npz       # the project's venv
    ~/.cache/mnv3compile/tfenv/bin/python benchmarks/keras_models.py --zoo-weights ZOO.npz [OUT_DIR]

writes OUT_DIR/keras_mobilenetv3_small_zoo_weights.onnx. Keras pads its stride-2 convs unevenly
(TF "same": 0 before, 1 after) where the zoo pads 1 on each side, so the two compute slightly
different functions of the same parameters.

Keras' fresh BatchNorm statistics (mean 0, variance 1) do not match what its layers see: the
activations of an untrained MobileNetV3Large fade to nothing by block 13, and any quantizer then
measures noise. As the zoo does for its own random weights, each BatchNorm's moving mean and
variance are set, in graph order, to the statistics of its input on random images.
"""

from __future__ import annotations

import sys
from pathlib import Path

OPSET = 17
MODELS = ("small", "large")


def calibrate_batchnorm(model, images) -> None:
    """Each BatchNormalization's moving statistics := those of its input on ``images``, in order."""
    import tensorflow as tf

    for layer in model.layers:
        if not isinstance(layer, tf.keras.layers.BatchNormalization):
            continue
        probe = tf.keras.Model(model.inputs, layer.input)
        x = probe(images, training=False).numpy()
        axes = tuple(range(x.ndim - 1))
        gamma, beta, _, _ = layer.get_weights()
        layer.set_weights([gamma, beta, x.mean(axis=axes), x.var(axis=axes) + 1e-5])


def export(out_dir: Path) -> list[Path]:
    import tensorflow as tf
    import tf2onnx

    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        tf.keras.utils.set_random_seed(0)
        make = tf.keras.applications.MobileNetV3Small if name == "small" else tf.keras.applications.MobileNetV3Large
        model = make(input_shape=(224, 224, 3), weights=None, include_preprocessing=False)
        calibrate_batchnorm(model, tf.random.stateless_normal((4, 224, 224, 3), seed=[0, 1]))
        spec = (tf.TensorSpec((1, 224, 224, 3), tf.float32, name="input"),)
        path = out_dir / f"keras_mobilenetv3_{name}.onnx"
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET, output_path=str(path))
        written.append(path)
        print(f"wrote {path}")
    return written


def dump_zoo(name: str, path: Path) -> None:
    """The zoo model's parameters, in graph order, to an .npz (run in the project's venv)."""
    import numpy as np
    from onnx import numpy_helper

    from mnv3compile.zoo import build_model, build_spec

    model = build_model(build_spec(name, 1.0, 224))
    arrays = {f"{i:04d}:{t.name}": numpy_helper.to_array(t) for i, t in enumerate(model.graph.initializer)}
    np.savez(path, **arrays)
    print(f"wrote {path} ({len(arrays)} arrays)")


def load_zoo_weights(model, path: Path) -> None:
    """Set the Keras model's parameters to the zoo's (torch layout), matched in graph order: each
    conv's weight (and bias), each BatchNorm's four vectors; the classifier's two Linear layers
    are Keras' last two 1x1 convs."""
    import numpy as np
    import tensorflow as tf

    with np.load(path) as stored:
        arrays = [stored[k] for k in sorted(stored.files)]
    convs, norms = [], []
    i = 0
    while i < len(arrays):
        if arrays[i].ndim in (2, 4):  # a conv or Linear weight, maybe followed by its bias
            has_bias = i + 1 < len(arrays) and arrays[i + 1].ndim == 1 and (
                i + 2 >= len(arrays) or arrays[i + 2].ndim != 1)
            convs.append((arrays[i], arrays[i + 1] if has_bias else None))
            i += 2 if has_bias else 1
        else:  # BatchNorm: scale, shift, mean, variance
            norms.append(arrays[i:i + 4])
            i += 4
    conv_layers = [layer for layer in model.layers
                   if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.DepthwiseConv2D))]
    norm_layers = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    if len(conv_layers) != len(convs) or len(norm_layers) != len(norms):
        raise SystemExit(f"the zoo has {len(convs)} convs / {len(norms)} BNs, Keras {len(conv_layers)} / {len(norm_layers)}")
    for layer, (weight, bias) in zip(conv_layers, convs):
        if weight.ndim == 2:  # Linear (out, in) -> 1x1 conv (1, 1, in, out)
            kernel = weight.T[None, None]
        elif isinstance(layer, tf.keras.layers.DepthwiseConv2D):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            kernel = weight.transpose(2, 3, 0, 1)
        else:  # (O, I, kh, kw) -> (kh, kw, I, O)
            kernel = weight.transpose(2, 3, 1, 0)
        layer.set_weights([kernel] + ([bias] if bias is not None else []))
    for layer, vectors in zip(norm_layers, norms):
        layer.set_weights(list(vectors))


def export_with_zoo_weights(zoo: Path, out_dir: Path) -> Path:
    import tensorflow as tf
    import tf2onnx

    model = tf.keras.applications.MobileNetV3Small(input_shape=(224, 224, 3), weights=None, include_preprocessing=False)
    load_zoo_weights(model, zoo)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "keras_mobilenetv3_small_zoo_weights.onnx"
    spec = (tf.TensorSpec((1, 224, 224, 3), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET, output_path=str(path))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    default_dir = Path.home() / ".cache" / "mnv3compile" / "keras"
    if len(sys.argv) > 1 and sys.argv[1] == "--dump-zoo":
        dump_zoo(sys.argv[2], Path(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--zoo-weights":
        export_with_zoo_weights(Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else default_dir)
    else:
        export(Path(sys.argv[1]) if len(sys.argv) > 1 else default_dir)
