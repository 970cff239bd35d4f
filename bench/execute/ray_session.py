"""The Ray a run uses: a private local one, started and stopped here, or a cluster joined.

A local Ray has no dashboard (``dashboard`` asks for one, on 127.0.0.1 only), no usage
statistics, binds 127.0.0.1, keeps a temporary folder of its own and leaves Ray's token
authentication on; joining ``address`` carries the harness's code to the nodes
(``py_modules``) and sets the auth mode explicitly (bench/execute/cluster.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import ray
from ray._private import ray_constants
from ray._raylet import Config

from bench import REPO_ROOT
from bench.errors import RunnerError
from bench.execute.cluster import code_modules, join_auth_mode, probe
from bench.execute.ray_env import USER_AUTH_MODE, trial_environment
from bench.execute.resources import check_address
from bench.plan.planner import Scheduling
from bench.trial.execution import current_backend

LOOPBACK = "127.0.0.1"


@dataclass
class RayInstance:
    """The Ray a run uses: whether this process started (or joined) it, and its temp folder."""

    temp_dir: str | None = None
    started_here: bool = field(default=False)


def join_cluster(scheduling: Scheduling, model_modules: Sequence[str] = ()) -> None:
    """Join ``scheduling.address`` with the harness's code travelling along (``py_modules``): its
    nodes need the dependencies installed, not this project, and see none of this machine's files."""
    check_address(scheduling.address)
    os.environ["RAY_AUTH_MODE"] = join_auth_mode({**os.environ, "RAY_AUTH_MODE": USER_AUTH_MODE or ""})
    Config.initialize("")  # as Ray itself does when it sets the mode: this process sees it now
    # a cluster's nodes are reached at their network address: the local-run loopback rule is not for it
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
    ray_constants.ENABLE_RAY_CLUSTER = True
    probe(scheduling.address, os.environ)
    try:
        ray.init(
            address=scheduling.address,
            log_to_driver=False,
            logging_level=logging.ERROR,
            runtime_env={"py_modules": code_modules(model_modules), "env_vars": trial_environment(current_backend())},
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise RunnerError(f"cannot join the Ray cluster at {scheduling.address}: {error}") from None


def start_ray(scheduling: Scheduling, model_modules: Sequence[str] = ()) -> RayInstance:
    """Join ``scheduling.address``, or start a private local Ray; a Ray already running is used as it is."""
    if ray.is_initialized():  # a caller (a test, a notebook) already joined a cluster
        return RayInstance()
    # the harness, and the working folder a user's --model-module is imported from
    paths = [str(REPO_ROOT), os.getcwd(), os.environ.get("PYTHONPATH")]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, paths)))
    if scheduling.address:
        join_cluster(scheduling, model_modules)
        return RayInstance(started_here=True)
    temp_dir = tempfile.mkdtemp(prefix="adience-ray-")
    context = ray.init(**local_ray_options(scheduling, temp_dir))
    if scheduling.dashboard and getattr(context, "dashboard_url", None):
        print(f"Ray dashboard: http://{context.dashboard_url} (this machine only)")
    return RayInstance(temp_dir=temp_dir, started_here=True)


def local_ray_options(scheduling: Scheduling, temp_dir: str) -> dict:
    """``ray.init`` arguments of a private local Ray: no dashboard unless asked, and then on loopback only."""
    options = {
        "include_dashboard": scheduling.dashboard,
        "_temp_dir": temp_dir,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "num_gpus": scheduling.num_gpus,
    }
    if scheduling.dashboard:
        options["dashboard_host"] = LOOPBACK
    return options


def stop_ray(instance: RayInstance) -> None:
    """Shut down what ``start_ray`` started, and remove its temp folder."""
    if instance.started_here and ray.is_initialized():
        ray.shutdown()
    if instance.temp_dir:
        shutil.rmtree(instance.temp_dir, ignore_errors=True)
    sys.stdout.flush()
