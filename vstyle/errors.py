"""The one exception a user can act on, and the one warning category."""


class VStyleError(Exception):
    """A problem the user can fix. The message names the problem and the fix, in one line."""


class VStyleWarning(UserWarning):
    """Something the user should know (random weights, a very large GIF); the run goes on."""
