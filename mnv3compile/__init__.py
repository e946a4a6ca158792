"""mnv3compile: a model compiler for MobileNetV3 on phones."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mnv3compile")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
