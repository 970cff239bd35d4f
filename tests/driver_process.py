"""A ``bench.run`` driver process watched by a test: its lines up to one, its end within a bound,
its run folder; and the one long trial that the kill and outage tests interrupt.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

RUN_TIMEOUT_S = 420
# The trial the kill tests interrupt. With the images on the device an epoch of the tiny CNN
# takes 0.2-0.8 s, so the selftest's 5-epoch trial could end between the line a test waits
# for and its kill; 30 epochs without a patience rule cannot.
LONG_EPOCHS = 30
LONG_TRIAL = "tiny_cnn_long"
LONG_SUITE = f"""
name = "killtest"
description = "one tiny CNN trial long enough to be interrupted"
[[trials]]
name = "{LONG_TRIAL}"
model = "tiny_cnn"
optimizer = "adam"
learning_rate = 0.003
momentum = 0.0
batch_size = 16
epochs = {LONG_EPOCHS}
patience = {LONG_EPOCHS}
"""


def long_suite(folder: Path) -> str:
    """The path of a suite file holding LONG_TRIAL, written on the driver's side only (it runs as
    written; ``--epochs LONG_EPOCHS`` says the budget on the command line too)."""
    path = folder / "killtest.toml"
    path.write_text(LONG_SUITE)
    return str(path)


def finish(process: subprocess.Popen, timeout: float = RUN_TIMEOUT_S) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the run did not end within {timeout} s: {output[-3000:]}")
    return output


def watch(process: subprocess.Popen, line_has: str, timeout: float = RUN_TIMEOUT_S) -> list[str]:
    """The driver's lines up to the first that contains ``line_has``."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line_has in line:
            return seen
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"no line with {line_has!r} within {timeout} s: {''.join(seen)[-3000:]}")


def run_folder(out: Path) -> Path:
    (folder,) = [path for path in out.iterdir() if path.is_dir()]
    return folder
