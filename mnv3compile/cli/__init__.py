"""The ``mnv3compile`` command line. Thin: it parses options and calls the library.

Every user mistake ends as one line ``error: ...`` on stderr and exit code 2.

Here: the command group, ``main``, the console and what every command shares. The commands, one
module per group: models.py (export, zoo, inspect, optimize, passes), quantize.py, build.py,
tune.py, run.py (run, bench, profile), devices.py (targets, doctor, phone, deploy-test); options.py
holds the options and input checks that quantize, build and tune share.
"""

from __future__ import annotations

import importlib
import sys

import click
from rich.console import Console

from mnv3compile import __version__
from mnv3compile.errors import DynamicShapeError, NotCanonicalError, UserError

console = Console()
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
INVOCATION: list[str] = []  # the arguments main() runs with ('tune' repeats them to say how to resume)


def wide_console(width: int = 132) -> Console:
    """Piped output has no terminal width; keep tables whole rather than cut at 80 columns."""
    return Console(width=None if console.is_terminal else width)


class RegistryChoice(click.Choice):
    """A choice among the names of a library registry (``name`` in ``module``), read when click
    first needs them (help, parsing): starting the command line imports neither TVM nor the
    quantizer, and no list of names is written twice."""

    def __init__(self, module: str, name: str, leave_out: tuple[str, ...] = ()):
        super().__init__(())
        self.registry, self.leave_out = (module, name), leave_out

    @property
    def choices(self) -> tuple[str, ...]:
        module, name = self.registry
        return tuple(c for c in getattr(importlib.import_module(module), name) if c not in self.leave_out)

    @choices.setter
    def choices(self, _given) -> None:  # click.Choice.__init__ stores its list: the registry is the list
        pass


def parse_input_shapes(specs: tuple[str, ...]) -> dict[str | None, list[int]]:
    """Parse ``[NAME=]1,3,48,192`` options (``x`` separators accepted too); no NAME (None): the
    model's only input."""
    shapes: dict[str | None, list[int]] = {}
    for spec in specs:
        name, _, dims = spec.rpartition("=")
        try:
            shapes[name or None] = [int(d) for d in dims.replace("x", ",").split(",")]
        except ValueError:
            raise UserError(f"--input-shape {spec}: expected integers like 1,3,224,224") from None
    return shapes


def warn_if_remote(tracker: str | None) -> None:
    from mnv3compile.phone import unauthenticated_warning

    warning = unauthenticated_warning(tracker) if tracker is not None else None
    if warning is not None:
        print(warning, file=sys.stderr)


@click.group(context_settings=CONTEXT, epilog="""\b
Examples:
  mnv3compile export --model small --width 0.75 --resolution 160 -o small.onnx
  mnv3compile inspect small.onnx
  mnv3compile zoo --resolution 160
  mnv3compile optimize small.onnx -o small.opt.onnx --verify --report
  mnv3compile quantize small.onnx --calib images/ --preprocess torchvision -o small.int8.onnx
  mnv3compile build --model small --target arm64-android --quant int8
  mnv3compile tune --model small --quant int8 --time-budget 20m
  mnv3compile run build/small-int8-host examples/sample.png
""")
@click.version_option(__version__, prog_name="mnv3compile")
def cli() -> None:
    """A model compiler for MobileNetV3 on phones.

    Emits MobileNetV3 variants as ONNX, rewrites them into a canonical form, quantizes them
    to int8 and compiles them with Apache TVM into libraries for this machine, arm64 Linux
    and Android. Run 'mnv3compile COMMAND --help' for each command's options and examples.
    """


def user_message(exc: UserError) -> str:
    """The library's typed errors, worded with what to do about them on the command line."""
    if isinstance(exc, DynamicShapeError):
        return f"{exc}; give --input-shape {exc.input_name}=N,C,H,W {exc.purpose}"
    if isinstance(exc, NotCanonicalError):
        return f"{exc}; run 'mnv3compile optimize' first"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: run the CLI; user errors become one line on stderr and exit 2;
    SIGINT/SIGTERM one line and exit 130/143, nothing half-written (mnv3compile/signals.py)."""
    from mnv3compile import signals

    INVOCATION[:] = sys.argv[1:] if argv is None else argv

    with signals.handled():
        try:
            cli.main(args=argv, prog_name="mnv3compile", standalone_mode=False)
            signals.check()  # a signal swallowed inside C++ code still ends the command as one
        except signals.Interrupted as exc:
            print(f"error: aborted ({exc})", file=sys.stderr)
            return signals.exit_code(exc.signum)
        except UserError as exc:
            print(f"error: {user_message(exc)}", file=sys.stderr)
            return 2
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.exceptions.Abort:
            print("error: aborted (SIGINT)", file=sys.stderr)
            return 130
        except click.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare 'mnv3compile': help, not an error
                print(exc.format_message())
                return 0
            print(f"error: {exc.format_message()}", file=sys.stderr)
            return 2
        except Exception:
            signum = signals.received()
            if signum is None:
                raise
            # The signal arrived inside TVM's C++ code and came back as TVM's own error.
            print(f"error: aborted ({signals.name(signum)})", file=sys.stderr)
            return signals.exit_code(signum)
    return 0


# The commands register themselves with the group when their modules load.
from mnv3compile.cli import build, devices, models, quantize, run, tune  # noqa: E402, F401
