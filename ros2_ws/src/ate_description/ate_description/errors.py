"""Errors the command line reports as one clear line, without a traceback."""


class UserError(Exception):
    """A problem with the user's input or files: the message names the problem and the fix."""
