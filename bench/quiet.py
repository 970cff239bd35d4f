"""Import TensorFlow without its C++ start-up notes on stderr.

TensorFlow 2.21 writes "oneDNN custom operations are on" and absl's "All log messages
before absl::InitializeLog()" straight to file descriptor 2 at import, whatever
TF_CPP_MIN_LOG_LEVEL says; on the CLI they drown the one-line errors. Those known lines
are dropped; anything else TensorFlow prints is passed on.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

KNOWN_NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "This TensorFlow binary is optimized",
    "To enable the following instructions",
)


def import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    if importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                if not any(noise in line for noise in KNOWN_NOISE)
            ]
            sys.stderr.write("".join(kept))
