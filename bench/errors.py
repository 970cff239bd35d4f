"""Errors the CLI turns into one line and exit code 2, importable without ray or keras."""


class RunnerError(RuntimeError):
    """A scheduling problem the user can fix (bad resources, unreachable cluster, no run to resume)."""
