"""Joining a Ray cluster, before any trial runs: the code the job carries to nodes that have
only the dependencies installed, how it authenticates, a probe that turns a refused join
into one line (where Tune keeps a run's experiment: bench/plan/storage.py).

No ray here (the probe runs ray in a child process, so Ray's own retry lines stay there).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench import REPO_ROOT
from bench.errors import RunnerError, error_line

PACKAGES = ("bench", "models", "data")  # what a trial imports of this project
JOIN_TIMEOUT_S = 90.0  # importing and starting Ray in a child takes 5-20 s on a busy 2-core machine
PROBE_POLL_S = 0.2
TOKEN_FILE = Path.home() / ".ray" / "auth_token"
_AUTH_FAILURE = re.compile(r"InvalidAuthToken|UNAUTHENTICATED|AuthenticationError|authentication token", re.I)
AUTH_HELP = (
    "the Ray cluster at {address} requires token authentication: set RAY_AUTH_MODE=token and give this "
    "machine the cluster's token (in ~/.ray/auth_token, or RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH)"
)


def code_modules(model_modules: Sequence[str] = ()) -> list[str]:
    """The package folders (and a user's model modules) a job takes to every node: Ray's ``py_modules``."""
    paths = [str(REPO_ROOT / package) for package in PACKAGES]
    for name in model_modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RunnerError(f"--model-module {name}: not found, so it cannot travel to the cluster's nodes")
        locations = spec.submodule_search_locations
        paths.append(str(locations[0]) if locations else spec.origin)
    return paths


def has_token(environ: Mapping[str, str] = os.environ) -> bool:
    path = environ.get("RAY_AUTH_TOKEN_PATH")
    return bool(environ.get("RAY_AUTH_TOKEN")) or Path(path or TOKEN_FILE).expanduser().is_file()


def join_auth_mode(environ: Mapping[str, str] = os.environ) -> str:
    """RAY_AUTH_MODE for joining a cluster, set explicitly: the user's, else token when there is a
    token to present, else disabled (Ray 2.60 would otherwise decide by itself, differently by start)."""
    return environ.get("RAY_AUTH_MODE") or ("token" if has_token(environ) else "disabled")


def probe(address: str, environ: Mapping[str, str], timeout: float = JOIN_TIMEOUT_S) -> None:
    """Join ``address`` from a child process, so that a refusal is one line here: at once when the
    cluster refuses the token (Ray itself would retry for a minute), else within ``timeout``."""
    code = (
        "import logging, ray\n"
        f"ray.init(address={address!r}, logging_level=logging.ERROR, log_to_driver=False)\n"
        "print(len(ray.nodes()))\n"
    )
    with tempfile.TemporaryFile(mode="w+") as said:
        child = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=said, text=True, env=dict(environ)
        )
        deadline = time.monotonic() + timeout
        try:
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(PROBE_POLL_S)
                said.seek(0)
                if _AUTH_FAILURE.search(said.read()):
                    raise RunnerError(AUTH_HELP.format(address=address))
            if child.returncode is None:
                raise RunnerError(f"cannot join the Ray cluster at {address}: no answer within {timeout:.0f} s")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        said.seek(0)
        stderr = said.read()
    if child.returncode != 0:
        if _AUTH_FAILURE.search(stderr):
            raise RunnerError(AUTH_HELP.format(address=address))
        raise RunnerError(f"cannot join the Ray cluster at {address}: {error_line(stderr)}")
