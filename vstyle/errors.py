"""The one exception a user can act on, the one warning category, and how messages count."""


class VStyleError(Exception):
    """A problem the user can fix. The message names the problem and the fix, in one line."""


class VStyleWarning(UserWarning):
    """Something the user should know (random weights, a very large GIF); the run goes on."""


def plural(n: int, thing: str) -> str:
    """'1 frame', '3 frames': counts in messages."""
    return f"{n} {thing}{'s' * (n != 1)}"
