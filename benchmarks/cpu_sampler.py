"""CPU accounting for the overhead profile: a background sampler of every thread's CPU time on
the machine (psutil, thread names from /proc), summed per process kind (this driver, the
trial's Ray worker, raylet, gcs_server, Ray's other processes, everything else) and, inside
the process that trains, per thread. Linux only (/proc thread names).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from dataclasses import dataclass

import psutil

SAMPLE_SECONDS = 0.5
SAMPLER_THREAD = "cpu-sampler"  # its OS thread name, so its own CPU shows apart
# Threads of the process that trains, by name. TensorFlow's oneDNN kernels run on OpenMP
# threads, which keep the name of the process that started them ("python", "ray::..."),
# so a thread is told by its name and by whether it is the process's main thread.
MAIN_THREAD = "main thread"
UNNAMED_THREADS = "unnamed threads (OpenMP / oneDNN compute, Python threads)"


# --------------------------------------------------------------------------- CPU accounting


@dataclass(frozen=True)
class ThreadCpu:
    pid: int
    tid: int
    process: str  # what the process is (classify_process)
    thread: str  # the thread's name (/proc/.../comm)
    seconds: float  # CPU seconds (user + system) since the thread started


def _thread_name(pid: int, tid: int) -> str:
    try:
        with open(f"/proc/{pid}/task/{tid}/comm", "rb") as handle:
            return handle.read().decode(errors="replace").strip()
    except OSError:  # the thread ended between listing and reading
        return "?"


def classify_process(pid: int, cmdline: str, own_pid: int, trial_pids: set[int]) -> str:
    if pid == own_pid:
        return "this driver"
    if pid in trial_pids:
        return "trial worker"
    if "gcs_server" in cmdline:
        return "gcs_server"
    if "raylet" in cmdline.split(" ", 1)[0] or "/raylet " in cmdline:
        return "raylet"
    if "ray::" in cmdline or "/ray/" in cmdline or "ray/_private" in cmdline or "ray/dashboard" in cmdline:
        return "other Ray processes"
    return "everything else"


def read_threads() -> list[tuple[int, int, str, float, str]]:
    """(pid, tid, thread name, CPU seconds, process cmdline) for every thread on the machine."""
    rows = []
    for process in psutil.process_iter():
        try:
            cmdline = " ".join(process.cmdline())
            threads = process.threads()
        except (psutil.Error, OSError):  # ended, or not ours to read
            continue
        for thread in threads:
            seconds = thread.user_time + thread.system_time
            rows.append((process.pid, thread.id, _thread_name(process.pid, thread.id), seconds, cmdline))
    return rows


def _name_this_thread(name: str) -> None:
    """Set the calling thread's OS name (what /proc/.../comm shows); Python does not."""
    # not Linux: the sampler's CPU shows under the process's name
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


class CpuSampler:
    """A background thread reading every thread's CPU time, ``SAMPLE_SECONDS`` apart."""

    def __init__(self, interval: float = SAMPLE_SECONDS):
        self.interval = interval
        self.samples: list[tuple[float, list[tuple[int, int, str, float, str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        _name_this_thread(SAMPLER_THREAD)
        while not self._stop.is_set():
            self.samples.append((time.time(), read_threads()))
            self._stop.wait(self.interval)
        self.samples.append((time.time(), read_threads()))

    def nearest(self, moment: float):
        return min(self.samples, key=lambda sample: abs(sample[0] - moment))

    def cpu_between(self, start: float, end: float, trial_pids: set[int]) -> tuple[float, list[ThreadCpu]]:
        """(seconds between the two samples nearest ``start`` and ``end``, CPU seconds per thread in between)."""
        (t0, before), (t1, after) = self.nearest(start), self.nearest(end)
        earlier = {(pid, tid): seconds for pid, tid, _name, seconds, _cmd in before}
        own = os.getpid()
        used = []
        for pid, tid, name, seconds, cmdline in after:
            # a thread born inside the window counts from zero
            spent = seconds - earlier.get((pid, tid), 0.0)
            if spent > 0:
                used.append(ThreadCpu(pid, tid, classify_process(pid, cmdline, own, trial_pids), name, spent))
        return t1 - t0, used

    def stalled_seconds(self, start: float, end: float, pids: set[int], below: float = 0.1) -> float:
        """Seconds between ``start`` and ``end`` in which ``pids`` together used under ``below`` of a core."""
        inside = [sample for sample in self.samples if start <= sample[0] <= end]
        stalled = 0.0
        for (t0, before), (t1, after) in zip(inside, inside[1:], strict=False):
            used = sum(row[3] for row in after if row[0] in pids) - sum(row[3] for row in before if row[0] in pids)
            if used < below * (t1 - t0):
                stalled += t1 - t0
        return stalled


def thread_group(thread: ThreadCpu, process_name: str) -> str:
    """The main thread, the threads that kept the process's name, or the thread's own name."""
    if thread.tid == thread.pid:
        return MAIN_THREAD
    if thread.thread == process_name:
        return UNNAMED_THREADS
    return thread.thread
