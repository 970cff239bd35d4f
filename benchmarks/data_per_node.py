"""What handing trials their data through Ray's object store costs per node, for a cache the size
of the full Adience set: 17,492 faces at 256x256 (3.4 GB).

``python -m benchmarks.data_per_node [--faces 17492] [--folder /tmp/adience-bench-full-cache]``

Needs root (a real two-node cluster of ``ray start`` processes on 127.0.0.1, the worker in
namespaces of its own: support/local_cluster.py). The driver puts the cache's pixels into the
store, as ``tune.with_parameters`` does in bench/execute/runner.py, and tasks read them as trials do:
on the head (the node that holds them), then twice on the worker (the first read transfers them
there, the second finds them). Each line gives the seconds, the shared memory the node's object
store took (/dev/shm, where both nodes of this machine keep their stores) and the reading
process's resident memory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from data.adience import DatasetError

REPO_ROOT = Path(__file__).resolve().parent.parent
FULL_ADIENCE_FACES = 17_492
SIDE = 256
CHUNK = 512


def make_cache(folder: Path, faces: int) -> None:
    """A cache folder of ``faces`` random 256x256 faces (data.cache's format), written once."""
    import pandas as pd

    from data.cache import IMAGES_FILE, open_cache, write_cache_tables

    with contextlib.suppress(DatasetError, OSError, KeyError, ValueError):
        if open_cache(folder).slots == faces:
            return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    with (folder / IMAGES_FILE).open("wb") as out:
        for first in range(0, faces, CHUNK):
            out.write(rng.integers(0, 256, (min(CHUNK, faces - first), SIDE, SIDE, 3), dtype=np.uint8).tobytes())
    table = pd.DataFrame({"slot": np.arange(faces), "fold": np.arange(faces) % 5, "label": np.arange(faces) % 2})
    write_cache_tables(folder, table, SIDE, faces, f"benchmark-{faces}")
    print(
        f"made a cache of {faces} faces ({faces * SIDE * SIDE * 3 / 1e9:.2f} GB) in {time.perf_counter() - started:.0f} s"
    )


def shm_used() -> int:
    return shutil.disk_usage("/dev/shm").used


def inner(folder: Path, address: str) -> None:
    """In the cluster's network: put the cache, read it on each node, print a line per step."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from bench.trial.measure import resident_memory_bytes
    from data.cache import open_cache

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    head = ray.get_runtime_context().get_node_id()
    (worker,) = [node["NodeID"] for node in ray.nodes() if node["Alive"] and node["NodeID"] != head]
    cache = open_cache(folder)
    before, started = shm_used(), time.perf_counter()
    portable = cache.portable()
    reference = ray.put(portable)
    print(
        f"driver: put {cache.slots * cache.image_bytes / 1e9:.2f} GB into the head's object store in "
        f"{time.perf_counter() - started:.1f} s; object store +{(shm_used() - before) / 1e9:.2f} GB",
        flush=True,
    )
    del portable

    @ray.remote(num_cpus=0)
    def read(holder: list) -> dict:
        before, started = shm_used(), time.perf_counter()
        received = ray.get(holder[0])
        got = time.perf_counter() - started
        batch = received.read(np.arange(0, received.slots, max(1, received.slots // 256)))  # as a trial's batches
        checksum = int(batch.sum(dtype=np.int64))
        return {"get_s": got, "shm_delta": shm_used() - before, "rss": resident_memory_bytes(), "checksum": checksum}

    steps = [("head (holds the object)", head), ("worker, first read", worker), ("worker, second read", worker)]
    for label, node in steps:
        strategy = NodeAffinitySchedulingStrategy(node, soft=False)
        started = time.perf_counter()
        seen = ray.get(read.options(scheduling_strategy=strategy).remote([reference]))
        print(
            f"{label}: ray.get {seen['get_s']:.2f} s (task {time.perf_counter() - started:.1f} s), object store "
            f"+{seen['shm_delta'] / 1e9:.2f} GB, reader resident {seen['rss'] / 1e9:.2f} GB",
            flush=True,
        )
    ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=FULL_ADIENCE_FACES)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/adience-bench-full-cache"))
    parser.add_argument("--inner", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        inner(args.folder, args.inner)
        return 0
    from support.local_cluster import ADDRESS, LocalCluster, cluster_unavailable

    if reason := cluster_unavailable():
        print(f"cannot measure here: {reason}")
        return 1
    make_cache(args.folder, args.faces)
    root = Path(f"/tmp/abd{os.getpid()}")
    root.mkdir(exist_ok=True)
    cluster = LocalCluster(root=root, hidden=[])
    try:
        cluster.start(workers=1, cpus_per_worker=1)
        command = [sys.executable, "-m", "benchmarks.data_per_node", "--folder", str(args.folder), "--inner", ADDRESS]
        done = subprocess.run(
            ["ip", "netns", "exec", cluster.name, *command], env=cluster.environment(), cwd=REPO_ROOT, timeout=1200
        )
        return done.returncode
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
