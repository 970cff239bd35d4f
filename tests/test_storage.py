"""``--storage`` (bench/plan/storage.py, bench/execute/storage_faults.py): where Tune keeps a run,
checked against a real S3 API (moto's server on 127.0.0.1, tests/s3_server.py) before any
trial; credentials never recorded; a storage outage said in one line.

The runs that write to a bucket, lose it for 30 s and resume from it are in
tests/test_storage_runs.py and tests/test_cluster_nodes.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import quote

import pytest

from bench.errors import UsageError
from bench.execute.storage_faults import NOT_STORED, RAY_STORAGE_LOGGERS, StorageOutage
from bench.plan import storage
from bench.plan.planner import RunRequest, Scheduling
from tests.conftest import run_cli

RUN_ID = "20261206-000000-selftest"
QUERY = "endpoint_override=127.0.0.1:9000&scheme=http&region=us-east-1"


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("s3://AKIAKEY:R/Xd+b%2Fq@bench/runs?region=x", "s3://***@bench/runs?region=x"),
        ("s3://AKIAKEY:s3cr3t@bench/runs", "s3://***@bench/runs"),
        (
            f"s3://bench/runs?{QUERY}&secret_key=s3cr3t&access_key=AKIAKEY",
            f"s3://bench/runs?{QUERY}&secret_key=***&access_key=***",
        ),
        ("s3://bench/runs?session_token=tok3n&region=eu-west-1", "s3://bench/runs?session_token=***&region=eu-west-1"),
        ("gs://bucket/runs?access_token=tok3n", "gs://bucket/runs?access_token=***"),
        (f"s3://bench/runs?{QUERY}", f"s3://bench/runs?{QUERY}"),
        ("/mnt/nfs/runs", "/mnt/nfs/runs"),
        (None, None),
    ],
)
def test_a_storage_uri_is_recorded_with_its_credentials_masked(given, shown):
    assert storage.masked(given) == shown


def test_every_secret_of_a_uri_and_of_the_environment_is_redacted_from_text():
    uri = f"s3://AKIAKEY:s3cr3t@bench/runs?{QUERY}&session_token=tok3n"
    secrets = storage.secrets_in(
        uri, {"AWS_SECRET_ACCESS_KEY": "envs3cr3t", "RAY_AUTH_TOKEN": "r4yt0k", "HOME": "/root"}
    )
    assert set(secrets) == {"AKIAKEY", "s3cr3t", "tok3n", "envs3cr3t", "r4yt0k", "AKIAKEY:s3cr3t"}
    said = storage.redact(f"opened {uri} with envs3cr3t and r4yt0k at /root", secrets)
    assert not any(secret in said for secret in secrets) and "/root" in said


def test_a_command_line_is_recorded_with_its_storage_masked():
    argv = ["--suite", "selftest", "--storage", "s3://K:S3CRET@b/p", "--storage=s3://b/p?secret_key=S3CRET"]
    assert storage.masked_argv(argv) == [
        "--suite",
        "selftest",
        "--storage",
        "s3://***@b/p",
        "--storage=s3://b/p?secret_key=***",
    ]


def test_the_run_id_goes_into_the_path_not_after_the_uris_query(tmp_path):
    run_dir = tmp_path / "runs" / RUN_ID
    assert storage.open_storage(None, run_dir).path == str(run_dir.resolve())
    shared = storage.open_storage(str(tmp_path / "nfs"), run_dir)
    assert Path(shared.path) == (tmp_path / "nfs" / RUN_ID).resolve() and shared.filesystem is None
    # pyarrow read 'http/<run id>' as the scheme when the run id followed the query
    bucket = storage.open_storage(f"s3://K:S3CRET@bench/runs/?{QUERY}", run_dir)
    assert bucket.path == f"bench/runs/{RUN_ID}" and bucket.filesystem.type_name == "s3"
    assert "S3CRET" not in bucket.shown and RUN_ID in bucket.shown


def test_a_uri_pyarrow_cannot_open_is_one_line_naming_storage_without_its_secret(tmp_path):
    with pytest.raises(UsageError, match=r"^--storage nosuch://bucket/x: pyarrow cannot open it"):
        storage.open_storage("nosuch://bucket/x", tmp_path / RUN_ID)
    with pytest.raises(UsageError, match=r"^--storage s3://\*\*\*@bench/x: pyarrow cannot open it") as raised:
        storage.open_storage("s3://AKIAKEY:R/Xd+s3cr3t@bench/x", tmp_path / RUN_ID)  # an unencoded '/'
    assert "s3cr3t" not in str(raised.value) and "AKIAKEY" not in str(raised.value)


def test_run_json_masks_the_storage_and_a_resume_asks_for_it_again(tmp_path):
    uri = "s3://AKIAKEY:s3cr3t@bench/runs"
    request = RunRequest("selftest", "smoke", "", True, None, {}, False, scheduling=Scheduling(storage=uri))
    assert request.scheduling.storage == uri  # in memory, as given
    recorded = json.loads(request.to_json())["scheduling"]["storage"]
    assert recorded == "s3://***@bench/runs" and "s3cr3t" not in request.to_json()
    with pytest.raises(UsageError, match=r"held credentials.*--resume RUN_DIR --storage 's3://\*\*\*@bench/runs'"):
        storage.restated(recorded, None)
    assert storage.restated(recorded, uri) == uri
    with pytest.raises(UsageError, match="is not this run's storage"):
        storage.restated(recorded, "s3://AKIAKEY:s3cr3t@other/runs")
    assert storage.restated("s3://bench/runs", None) == "s3://bench/runs"  # nothing masked: nothing to give


def test_resuming_a_run_whose_uri_held_credentials_asks_for_them_before_anything_runs(capsys, tmp_path):
    from bench.run import main

    uri = "s3://AKIAKEY:s3cr3t@bench/runs"
    request = RunRequest("selftest", "smoke", "", True, None, {}, False, scheduling=Scheduling(storage=uri))
    (tmp_path / "run.json").write_text(request.to_json())
    assert main(["--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: this run's --storage held credentials, which no run file records: give it again, "
        "--resume RUN_DIR --storage 's3://***@bench/runs' with each *** filled in"
    )
    assert main(["--resume", str(tmp_path), "--storage", "s3://AKIAKEY:s3cr3t@elsewhere/runs"]) == 2
    assert "is not this run's storage (s3://***@bench/runs)" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run.json"]  # nothing ran


def test_a_writable_bucket_passes_the_check_and_keeps_no_probe(s3_server, monkeypatch):
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    bucket = s3_server.make_bucket("checked")
    storage.check_storage(f"s3://{bucket}/runs")
    query = f"endpoint_override=127.0.0.1:{s3_server.port}&scheme=http&region=us-east-1"
    secret = quote(s3_server.secret, safe="")  # a secret key may hold '/' and '+': percent-encoded in a URI
    storage.check_storage(f"s3://{s3_server.key}:{secret}@{bucket}/runs?{query}")
    # pyarrow keeps the emptied prefix as a folder marker ('runs/'), which Tune would make anyway
    assert not [key for key in s3_server.keys(bucket) if storage.PROBE_PREFIX in key]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no bucket", "bucket 'nobucket' does not exist: create it"),
        ("wrong endpoint", "its endpoint does not answer (AWS Error NETWORK_CONNECTION"),
        ("refused credentials", "the credentials were refused for bucket 'refusing' (AWS Error ACCESS_DENIED"),
    ],
)
def test_a_bad_bucket_endpoint_or_credentials_is_one_line_naming_storage(s3_server, monkeypatch, case, expected):
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    s3_server.make_bucket("refusing")
    uri = {
        "no bucket": "s3://nobucket/runs",
        "wrong endpoint": "s3://refusing/runs?endpoint_override=127.0.0.1:1&scheme=http",
        "refused credentials": f"s3://{s3_server.key}:wr0ngs3cret@refusing/runs",
    }[case]
    with pytest.raises(UsageError) as raised:
        storage.check_storage(uri)
    said = str(raised.value)
    assert said.startswith(f"--storage {storage.masked(uri)}: ") and expected in said, said
    assert "\n" not in said and "wr0ngs3cret" not in said


def test_the_command_line_refuses_a_missing_bucket_before_any_trial(s3_server, monkeypatch, tmp_path):
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    done = run_cli("--suite", "selftest", "--out", str(tmp_path), "--storage", "s3://nobucket/runs", timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "error: --storage s3://nobucket/runs: bucket 'nobucket' does not exist: create it, or name one that does"
    ]
    assert "Run " not in done.stdout and not list(tmp_path.iterdir())  # no run folder, no Ray


def _ray_record(name: str, level: int, message: str, error: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error else None
    return logging.getLogger(name).makeRecord(name, level, __file__, 1, message, (), exc_info)


def test_an_outage_is_one_warning_line_until_the_storage_answers_again():
    lines: list[str] = []
    outage = StorageOutage(lines.append, "s3://bench/runs (run)")
    down = OSError("When uploading: AWS Error NETWORK_CONNECTION during PutObject operation: refused")
    syncer, state = RAY_STORAGE_LOGGERS[0], RAY_STORAGE_LOGGERS[1]
    assert not outage.filter(_ray_record(syncer, logging.WARNING, "Last sync command failed with ...", down))
    outage.result("tiny", {"epoch": 3, NOT_STORED: "AWS Error NETWORK_CONNECTION"})
    assert not outage.filter(_ray_record(state, logging.ERROR, "Saving experiment state to storage failed", down))
    assert not outage.filter(_ray_record(state, logging.WARNING, "Saving the experiment state took ~6 s"))
    assert lines == [
        "warning: the storage s3://bench/runs (run) did not answer (AWS Error NETWORK_CONNECTION during PutObject "
        "operation: refused): the experiment state was not saved; training goes on, and what was not stored is "
        "written at the next save"
    ]
    outage.result("tiny", {"epoch": 4, "checkpoint_dir_name": "checkpoint_000003"})  # stored: it answers
    assert outage.filter(_ray_record(state, logging.WARNING, "Saving the experiment state took ~6 s"))
    outage.result("tiny", {"epoch": 9, NOT_STORED: "AWS Error NETWORK_CONNECTION"})
    assert len(lines) == 2 and "[tiny] epoch 9's checkpoint skipped" in lines[1]
    assert outage.outages == 2


def test_a_sync_that_failed_on_this_machines_side_is_no_outage():
    lines: list[str] = []
    outage = StorageOutage(lines.append, "s3://bench/runs (run)")
    raced = FileNotFoundError(2, "Failed to open local file '/tmp/ray/session/artifacts/tune/driver_artifacts/x.json'")
    message = f"Last sync command failed with the following error:\nTraceback ...\nFileNotFoundError: {raced}"
    assert not outage.filter(_ray_record(RAY_STORAGE_LOGGERS[0], logging.WARNING, message))  # kept out
    assert not outage.filter(
        _ray_record(RAY_STORAGE_LOGGERS[1], logging.ERROR, "Saving experiment state failed", raced)
    )
    assert lines == [] and not outage.down


def test_the_outage_filter_is_on_rays_storage_loggers_only_while_attached():
    outage = StorageOutage(lambda line: None, "here").attach()
    try:
        assert all(outage in logging.getLogger(name).filters for name in RAY_STORAGE_LOGGERS)
    finally:
        outage.detach()
    assert not any(outage in logging.getLogger(name).filters for name in RAY_STORAGE_LOGGERS)


def test_an_unexpected_error_quoting_a_secret_says_it_nowhere(capsys, monkeypatch):
    import bench.plan.planner
    from bench.run import main

    uri = "s3://AKIAKEY:s3cr3t@bench/runs?session_token=tok3n"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envs3cr3t")

    def plan_run(request):  # a failure no check foresaw, whose message quotes what it was given
        raise RuntimeError(f"cannot use {request.scheduling.storage} with envs3cr3t")

    monkeypatch.setattr(bench.plan.planner, "plan_run", plan_run)
    monkeypatch.setattr("bench.run.check_storage", lambda given: None)
    assert main(["--suite", "selftest", "--storage", uri]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("unexpected error: RuntimeError: cannot use s3://***@bench/runs?session_token=*** with ***")
    log = Path(line.rsplit("(traceback in ", 1)[1].rstrip(")"))
    text = log.read_text()
    log.unlink()
    assert "RuntimeError: cannot use" in text
    assert not [secret for secret in ("AKIAKEY", "s3cr3t", "tok3n", "envs3cr3t") if secret in line + text]
