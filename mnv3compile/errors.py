"""The one exception type that means "the user gave bad input": the CLI prints it as one line, exit 2."""


class UserError(Exception):
    """Bad input from the user (file, option, model). Its message is the whole explanation."""
