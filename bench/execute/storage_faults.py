"""A storage that stops answering mid-run (a bucket briefly unreachable): training goes on.

A trial whose checkpoint cannot be written reports its epoch without it (``NOT_STORED`` says
why; its next checkpoint is tried as usual, and a restart goes on from the last one stored).
Ray Tune's own uploads of the experiment state that fail are retried at its next save; their
log records (tracebacks, several lines each) are kept out of the output. Each outage is one
warning line, said again only after the storage has answered in between. A sync that failed on
this machine's side (Ray Tune's staging folder changed under it: a file it listed was replaced
before it was read) is no outage: the next save carries the file, and nothing is said. No ray here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bench.plan.storage import short_reason

NOT_STORED = "checkpoint_not_stored"  # result key: why this epoch's checkpoint is not in the storage
STORED = "checkpoint_dir_name"  # Ray Tune's result key: the checkpoint stored with this result
# Ray Tune's loggers that report a failed upload, download or deletion in the storage
RAY_STORAGE_LOGGERS = (
    "ray.train._internal.syncer",
    "ray.tune.execution.experiment_state",
    "ray.train._internal.storage",
)
_FAILURE_WORDS = ("fail", "exception", "error")
# pyarrow's words for a local file that vanished while Tune synced its own staging folder
_LOCAL_SIDE = ("Failed to open local file", "local file")


class StorageOutage(logging.Filter):
    """One warning line per outage: from trials' skipped checkpoints and Ray Tune's failed syncs."""

    def __init__(self, write: Callable[[str], None], where: str):
        super().__init__()
        self.write = write
        self.where = where
        self.down = False
        self.outages = 0

    def failed(self, what: str, reason: str) -> None:
        if not self.down:
            self.down = True
            self.outages += 1
            self.write(
                f"warning: the storage {self.where} did not answer ({reason}): {what}; "
                "training goes on, and what was not stored is written at the next save"
            )

    def answered(self) -> None:
        self.down = False

    def result(self, label: str, result: dict) -> None:
        """A trial's epoch: its checkpoint skipped (an outage) or stored (the storage answers)."""
        if result.get(NOT_STORED):
            self.failed(f"[{label}] epoch {result.get('epoch')}'s checkpoint skipped", result[NOT_STORED])
        elif result.get(STORED):
            self.answered()

    def filter(self, record: logging.LogRecord) -> bool:
        """Ray Tune's records of a failed storage operation: kept out, said once as the outage."""
        message = record.getMessage()
        if record.levelno < logging.WARNING or not any(word in message.lower() for word in _FAILURE_WORDS):
            return not self.down or record.levelno < logging.WARNING  # slow-sync notes during an outage: out
        error = record.exc_info[1] if record.exc_info else None
        said = f"{message} {error or ''}"
        if any(words in said for words in _LOCAL_SIDE) and "AWS Error" not in said:
            return False  # Tune's staging folder changed during its sync: the next save carries it
        self.failed("the experiment state was not saved", short_reason(error or message))
        return False

    def attach(self) -> StorageOutage:
        for name in RAY_STORAGE_LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def detach(self) -> None:
        for name in RAY_STORAGE_LOGGERS:
            logging.getLogger(name).removeFilter(self)
