"""A run whose ``--storage`` is a bucket of a real S3 API (moto's server on 127.0.0.1,
tests/s3_server.py), on a local Ray: its experiment state and checkpoints are written to the
bucket (listed through the S3 API), the server is stopped for 30 s mid-run and started again,
and the run goes on, says so in one warning line, loses nothing and exits 0; the credentials
given in the URI are in no file of the run folder; ``--save-models`` exports land on the driver.

The cluster's runs on a bucket (both workers, a killed worker, a killed driver resumed):
tests/test_cluster_nodes.py. Slow: one run of the long tiny-CNN trial, ~1.5 minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from urllib.parse import quote

import pandas as pd
import pytest

from bench.execute.storage_faults import NOT_STORED
from tests.conftest import REPO_ROOT
from tests.driver_process import LONG_EPOCHS, LONG_TRIAL, finish, long_suite, run_folder, watch
from tests.s3_server import REGION

pytestmark = pytest.mark.slow
BUCKET = "local"
OUTAGE_S = 30.0
WARNING = "warning: the storage "


def test_a_run_survives_its_bucket_stopping_for_30_s_and_records_no_credential(s3_server, small_synthetic, tmp_path):
    s3_server.make_bucket(BUCKET)
    secret = quote(s3_server.secret, safe="")  # percent-encoded: a secret key may hold '/'
    query = f"endpoint_override=127.0.0.1:{s3_server.port}&scheme=http&region={REGION}"
    storage = f"s3://{s3_server.key}:{secret}@{BUCKET}/runs?{query}"
    arguments = ["--suite", long_suite(tmp_path), "--epochs", str(LONG_EPOCHS), "--data", str(small_synthetic)]
    arguments += ["--out", str(tmp_path / "out"), "--storage", storage, "--checkpoint-interval", "0", "--save-models"]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    driver = subprocess.Popen(
        [sys.executable, "-m", "bench.run", *arguments],
        cwd=REPO_ROOT,
        env=environment | {"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    before = watch(driver, f"[{LONG_TRIAL}] epoch 2/{LONG_EPOCHS}")
    folder = run_folder(tmp_path / "out")
    prefix = f"runs/{folder.name}/tune/"
    stored = [key for key in s3_server.keys(BUCKET, prefix) if "/checkpoint_" in key]
    where = s3_server.stop()
    stopped = time.monotonic()
    try:
        during = watch(driver, f"[{LONG_TRIAL}] epoch 4/{LONG_EPOCHS}", timeout=OUTAGE_S)  # training goes on
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
    finally:
        s3_server.resume(where)
    output = "".join(before + during) + finish(driver)
    assert driver.returncode == 0, output[-3000:]
    assert stored, f"no checkpoint in the bucket by epoch 2: {s3_server.keys(BUCKET, prefix)}"
    warnings = [line for line in output.splitlines() if line.startswith(WARNING)]
    assert len(warnings) == 1 and "did not answer" in warnings[0], output[-3000:]
    assert "Traceback" not in output, output[-3000:]

    epochs = pd.read_csv(folder / "epochs.csv")
    assert sorted(epochs["epoch"]) == list(range(1, LONG_EPOCHS + 1))  # each epoch once, none lost
    skipped = epochs.loc[epochs[NOT_STORED].notna(), "epoch"]  # the epochs whose checkpoint was skipped
    assert skipped.min() >= 3 and 4 in set(skipped), epochs[["epoch", NOT_STORED]].to_string()
    assert pd.read_csv(folder / "results.csv")["error"].isna().all()
    assert sorted(path.name for path in (folder / "models").glob("*.keras")) == [f"{LONG_TRIAL}.keras"]
    # the bucket holds the whole experiment once the server is back (Tune saves again)
    keys = s3_server.keys(BUCKET, prefix)
    assert any("experiment_state" in key for key in keys), keys
    (result_key,) = [key for key in keys if key.endswith("/result.json")]
    body = s3_server.client().get_object(Bucket=BUCKET, Key=result_key)["Body"].read().decode()
    assert [json.loads(line)["epoch"] for line in body.splitlines()] == list(range(1, LONG_EPOCHS + 1))

    written = "".join(path.read_text(errors="replace") for path in folder.rglob("*") if path.is_file())
    assert not [word for word in (s3_server.key, s3_server.secret, secret) if word in written + output]
    assert json.loads((folder / "run.json").read_text())["scheduling"]["storage"].startswith("s3://***@local/runs?")
