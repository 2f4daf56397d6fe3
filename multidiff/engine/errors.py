"""The one error type the command line reports as a single line instead of a traceback."""


class UserError(Exception):
    """Something the user can fix: an unknown recipe or key, a bad value, a missing file."""
