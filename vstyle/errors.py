"""The one exception a user can act on, the one warning category, and how messages count."""

import os
import shlex
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class VStyleError(Exception):
    """A problem the user can fix. The message names the problem and the fix, in one line."""


class VStyleWarning(UserWarning):
    """Something the user should know (random weights, a very large GIF); the run goes on."""


def warn(message: str) -> None:
    """A VStyleWarning attributed to the first caller outside this package (a script's call
    to vstyle.stylize, not a line inside vstyle), so that it points at the user's code and
    the warnings filters show it once per call site, as for any library's warning."""
    frame, level = sys._getframe(1), 2  # stacklevel 2: warn's caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, VStyleWarning, stacklevel=level)


# How messages name an option: as a Python keyword (size=256) for a library caller, or as a
# command-line flag (--size 256), which the command line switches to before it runs anything.
_FLAGS = False
_UNSET = object()


def name_options_as_flags(flags: bool = True) -> None:
    """Say options as command-line flags in messages from now on (the CLI; its batch workers)."""
    global _FLAGS
    _FLAGS = flags


def options_named_as_flags() -> bool:
    return _FLAGS


def flag(name: str) -> str:
    """The command-line flag of an option: style_weight -> --style-weight."""
    return "--" + name.replace("_", "-")


def opt(name: str, value=_UNSET, placeholder: bool = False) -> str:
    """An option, with its value, as the user gives it: `--size 256` on the command line,
    `size=256` from Python (`--restart` and `restart=True` for a switch). A placeholder value
    (FILE) is written as it is."""
    name = name.replace("-", "_")
    if _FLAGS:
        if value is _UNSET or value is True:
            return flag(name)
        return f"{flag(name)} {value if placeholder else shlex.quote(_text(value))}"
    if value is _UNSET:
        return name
    if placeholder or isinstance(value, (bool, int, float)):
        return f"{name}={_text(value)}"
    return f"{name}={str(value)!r}"  # a string or a path


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def again(why: str) -> str:
    """How to pick up where a run stopped, in the caller's words: 'run the same command again
    to resume', or (from Python) 'call it again the same way to resume'."""
    return f"run the same command again {why}" if _FLAGS else f"call it again the same way {why}"


def batch_call(inputs: str) -> str:
    """Stylizing many inputs, in the caller's words."""
    return f"`vstyle batch {inputs} STYLE -o OUTDIR`" if _FLAGS else \
        f"vstyle.batch.run_batch([{inputs!r}], style, outdir)"


def listed(words: list[str]) -> str:
    """'a', 'a and b', 'a, b and c': names in a message."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def plural(n: int, thing: str) -> str:
    """'1 frame', '3 frames': counts in messages."""
    return f"{n} {thing}{'s' * (n != 1)}"


def are(n: int) -> str:
    """'is' or 'are', as n asks: '1 of 3 frames is kept', '--report and --restart are'."""
    return "is" if n == 1 else "are"
