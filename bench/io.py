"""Atomic file writes: every output of a run lands whole or not at all.

A file is written to a temporary name beside its target, flushed to disk and renamed into
place, so a killed writer or a full disk leaves the previous version, never half of a new one.
Tables go out as parquet (for programs) and csv (for people), each written that way.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; results are for everyone to read
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_table(table: pd.DataFrame, stem: Path) -> list[Path]:
    """``stem``.parquet and ``stem``.csv, each written atomically."""
    parquet_path = stem.with_suffix(".parquet")
    csv_path = stem.with_suffix(".csv")
    atomic_write_bytes(parquet_path, table.to_parquet(index=False))
    atomic_write_text(csv_path, table.to_csv(index=False))
    return [parquet_path, csv_path]


def read_table(stem: Path) -> pd.DataFrame:
    return pd.read_parquet(stem.with_suffix(".parquet"))
