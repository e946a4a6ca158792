"""Errors that mean "the input cannot be used", typed so the CLI can word them for the user.

``UserError`` is bad input from the user (file, option, model); its message is the whole
explanation and the CLI prints it as one line, exit 2. The subclasses are raised by the library
(passes, quantizer, backend), which knows nothing of command-line options; ``cli.user_message``
adds what to do about them on the command line.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (file, option, model). Its message is the whole explanation."""


class NotCanonicalError(UserError):
    """A model reached the quantizer without the canonical form the passes produce
    (``mnv3compile.passes.canonical``), or with an annotation that no longer describes it."""


class DynamicShapeError(UserError):
    """A stage needs static input shapes and ``input`` has a dynamic one."""

    def __init__(self, input_name: str, purpose: str):
        super().__init__(f"input '{input_name}' has a dynamic shape")
        self.input_name, self.purpose = input_name, purpose


class OutputMismatchError(Exception):
    """Two runs that must agree do not (a pass changed an output's shape): a bug, not bad input."""
