"""Errors the tools report as one message instead of a traceback."""
import contextlib
import sys


class ToolError(Exception):
    """A problem the user can fix (a missing file, a wrong flag); the tools
    print its message alone and exit with status 1."""


class DatasetError(ToolError):
    """A dataset the run needs is missing or cannot be read."""


@contextlib.contextmanager
def exit_on_tool_error(prog):
    """Turn a :class:`ToolError`, or a refusal of :mod:`mmpoolformer.fileio`
    to replace a user's file, into ``SystemExit('<prog>: error: ...')``:
    Python prints that to stderr without a traceback and exits with 1, and an
    in-process caller (tests) can still catch it."""
    try:
        yield
    except (ToolError, FileExistsError, IsADirectoryError) as exc:
        sys.stdout.flush()
        raise SystemExit(f'{prog}: error: {exc}') from None
