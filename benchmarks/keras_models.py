"""Keras MobileNetV3Small/Large (random weights) exported to ONNX by tf2onnx, as a user of
TensorFlow gets them: channels-last input (1 x 224 x 224 x 3), TF's op spellings.

TensorFlow is heavy and pins numpy < 2, so it lives in a venv of its own, outside the project's:

    python3 -m venv ~/.cache/mnv3compile/tfenv
    ~/.cache/mnv3compile/tfenv/bin/pip install "tensorflow-cpu==2.15.1" "tf2onnx==1.16.1" "numpy<2"
    ~/.cache/mnv3compile/tfenv/bin/python benchmarks/keras_models.py [OUT_DIR]

writes OUT_DIR/keras_mobilenetv3_{small,large}.onnx (default ~/.cache/mnv3compile/keras): opset 17,
``weights=None`` (seeded), ``include_preprocessing=False`` so the input is the network's own.
TensorFlow 2.15 is the last with Keras 2, which tf2onnx 1.16 converts.

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


if __name__ == "__main__":
    export(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache" / "mnv3compile" / "keras")
