"""The test session's own home: no state of the user's real home is read or written."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import SESSION_ROOT, TEST_HOME

REAL_HOME = Path(pwd.getpwuid(os.getuid()).pw_dir)


def test_home_temp_dir_and_dataset_cache_are_the_sessions_own():
    from data.synthetic import default_cache_root

    assert Path.home() == TEST_HOME != REAL_HOME
    assert Path(tempfile.gettempdir()).is_relative_to(SESSION_ROOT)
    assert not default_cache_root().is_relative_to(REAL_HOME / ".cache")
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "KERAS_HOME"):
        assert name not in os.environ, name


def test_the_ray_token_file_the_harness_reads_is_in_the_sessions_home():
    from bench.cluster import TOKEN_FILE, has_token

    assert TOKEN_FILE.is_relative_to(TEST_HOME)
    saved = TOKEN_FILE.read_bytes() if TOKEN_FILE.is_file() else None
    try:
        TOKEN_FILE.unlink(missing_ok=True)
        assert not has_token({})  # whatever the real ~/.ray holds
        TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
        TOKEN_FILE.write_text("made-by-this-test")
        assert has_token({})
    finally:
        TOKEN_FILE.unlink(missing_ok=True)
        if saved is not None:
            TOKEN_FILE.write_bytes(saved)


def test_a_subprocess_inherits_the_sessions_home_and_temp_dir():
    code = "import pathlib, tempfile; print(pathlib.Path.home()); print(tempfile.gettempdir())"
    home, temp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert Path(home) == TEST_HOME and Path(temp).is_relative_to(SESSION_ROOT)
