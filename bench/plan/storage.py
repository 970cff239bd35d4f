"""Where Ray Tune keeps a run's experiment state and checkpoints (``--storage``): the run folder,
a folder every node mounts, or a pyarrow filesystem URI (``s3://``, ``gs://``, ...); the check
that the URI's bucket can be written, made before any trial; and the URI as a run may record it,
its credentials masked.

A URI is pyarrow's (``pyarrow.fs.FileSystem.from_uri``): the endpoint, region and credentials
come from its query (``?endpoint_override=HOST:PORT&scheme=http&region=...``) or from the
standard variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), which stay out of every file
a run writes. Tune gets the filesystem and a plain path (the run id appended to the path, never
to the query). No ray here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from bench.errors import UsageError, error_line

MASK = "***"
FLAG = "--storage"
# query fields whose values are secrets: access_key, secret_key, session_token, ...
_SECRET_FIELD = re.compile(r"key|secret|token|password|credential|signature", re.I)
_QUERY_SECRET = re.compile(r"(?<=[?&])([^=&#]+)=([^&#]*)")
# variables whose values are secrets wherever they turn up in a run's text
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "RAY_AUTH_TOKEN", "GOOGLE_OAUTH_ACCESS_TOKEN")
PROBE_PREFIX = ".adience-bench-probe-"
_REFUSED = ("ACCESS_DENIED", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "UNAUTHORIZED", "401")
_UNREACHABLE = ("NETWORK_CONNECTION", "connect", "resolve", "timed out", "Timeout")


def is_uri(storage: str | None) -> bool:
    return storage is not None and "://" in storage


def masked(storage: str | None) -> str | None:
    """``storage`` as a run may record it: a URI's user:password@ and secret query values as ***."""
    if not is_uri(storage):
        return storage
    scheme, userinfo, rest = _split_userinfo(storage)
    shown = f"{scheme}{MASK}@{rest}" if userinfo else storage

    def hide(match: re.Match) -> str:
        return f"{match[1]}={MASK}" if _SECRET_FIELD.search(match[1]) else match[0]

    return _QUERY_SECRET.sub(hide, shown)


def secrets_in(storage: str | None, environ: dict[str, str] | None = None) -> list[str]:
    """The literal secrets of ``storage`` (and of the secret variables in ``environ``), longest first."""
    found = [value for name, value in (environ or {}).items() if name in SECRET_VARIABLES and value]
    if is_uri(storage):
        _, userinfo, _ = _split_userinfo(storage)
        found += [userinfo, *userinfo.split(":", 1)] if userinfo else []
        query = storage.partition("?")[2]
        found += [value for name, value in parse_qsl(query) if _SECRET_FIELD.search(name)]
        found += [unquote(value) for value in found]
    return sorted({value for value in found if len(value) >= 3}, key=len, reverse=True)


def _split_userinfo(uri: str) -> tuple[str, str, str]:
    """``scheme://``, the user:password before the bucket (or ""), and the rest of ``uri``."""
    scheme, _, after = uri.partition("://")
    location = after.partition("?")[0]
    if "@" not in location:
        return f"{scheme}://", "", after
    at = location.rindex("@")  # a secret may hold '/' (percent-encoded or not): the last '@' ends it
    return f"{scheme}://", after[:at], after[at + 1 :]


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ***."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def given_storage(argv: Sequence[str]) -> str | None:
    """The ``--storage`` value of a command line, before it is parsed (for its secrets)."""
    for index, word in enumerate(argv):
        if word == FLAG and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith(f"{FLAG}="):
            return word.removeprefix(f"{FLAG}=")
    return None


def masked_argv(argv: Sequence[str]) -> list[str]:
    """A command line with its ``--storage`` value masked (both ``--storage X`` and ``--storage=X``)."""
    shown = []
    for index, word in enumerate(argv):
        if index and argv[index - 1] == FLAG:
            word = masked(word)
        elif word.startswith(f"{FLAG}="):
            word = f"{FLAG}={masked(word.removeprefix(f'{FLAG}='))}"
        shown.append(word)
    return shown


@dataclass(frozen=True)
class StorageTarget:
    """Where Tune keeps one run: ``path`` on ``filesystem`` (None: this machine's files)."""

    path: str
    filesystem: object | None = None  # a pyarrow.fs.FileSystem
    shown: str = ""  # where it is, as a line may say it


def open_storage(storage: str | None, run_dir: Path) -> StorageTarget:
    """The run folder, ``<folder>/<run id>``, or ``<bucket/prefix>/<run id>`` on the URI's filesystem."""
    if storage is None:
        return StorageTarget(str(run_dir.resolve()), shown=str(run_dir))
    if not is_uri(storage):
        path = str(Path(storage).expanduser().resolve() / run_dir.name)
        return StorageTarget(path, shown=path)
    filesystem, root = _filesystem(storage)
    return StorageTarget(f"{root.rstrip('/')}/{run_dir.name}", filesystem, f"{masked(storage)} ({run_dir.name})")


def _filesystem(storage: str):
    from pyarrow import fs  # pyarrow parses the URI, query and credentials

    try:
        return fs.FileSystem.from_uri(storage)
    except OSError as error:
        raise UsageError(_said(storage, error, "the URI's bucket")) from None
    except Exception as error:  # ArrowInvalid (a ValueError): an unknown scheme, a bad query
        raise UsageError(f"{FLAG} {masked(storage)}: pyarrow cannot open it: {_reason(error, storage)}") from None


def check_storage(storage: str | None) -> None:
    """A URI whose bucket is missing, whose endpoint does not answer or whose credentials are
    refused: one line naming ``--storage`` and what to fix (a UsageError), before any trial.
    Checked by writing and deleting one small object where the run's folder will be."""
    if not is_uri(storage):
        return
    from pyarrow import fs

    filesystem, root = _filesystem(storage)
    bucket = root.strip("/").split("/")[0]
    try:
        if filesystem.type_name in ("s3", "gcs") and filesystem.get_file_info(bucket).type == fs.FileType.NotFound:
            raise UsageError(
                f"{FLAG} {masked(storage)}: bucket {bucket!r} does not exist: create it, or name one that does"
            )
        probe = f"{root.rstrip('/')}/{PROBE_PREFIX}{uuid.uuid4().hex}"
        with filesystem.open_output_stream(probe) as stream:
            stream.write(b"adience-bench can write here\n")
        filesystem.delete_file(probe)
    except OSError as error:
        raise UsageError(_said(storage, error, f"bucket {bucket!r}")) from None


def _said(storage: str, error: Exception, what: str) -> str:
    reason = _reason(error, storage)
    if any(word in reason for word in _REFUSED):
        fix = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the URI's credentials) and their rights on it"
        return f"{FLAG} {masked(storage)}: the credentials were refused for {what} ({reason}): {fix}"
    if any(word in reason for word in _UNREACHABLE):
        fix = "check AWS_ENDPOINT_URL, or the URI's ?endpoint_override=HOST:PORT&scheme=http"
        return f"{FLAG} {masked(storage)}: its endpoint does not answer ({reason}): {fix}"
    return f"{FLAG} {masked(storage)}: cannot write to {what} ({reason})"


def _reason(error: Exception, storage: str) -> str:
    """``short_reason`` with the URI masked and its secrets out (pyarrow's messages quote it)."""
    said = redact(str(error).replace(storage, masked(storage)), secrets_in(storage))
    return short_reason(said or type(error).__name__)


def short_reason(error: BaseException | str) -> str:
    """What a failed storage operation says, in one line of at most 160 characters: the error's
    last line, from pyarrow's 'AWS Error ...' on where it has one."""
    said = error_line(str(error)) or type(error).__name__
    return (said[said.find("AWS Error") :] if "AWS Error" in said else said)[:160]


def restated(recorded: str | None, given: str | None) -> str | None:
    """The storage a resumed run goes on with: the one it recorded or, where the record masks
    credentials, the same URI given again with ``--storage``."""
    if given is None:
        if is_uri(recorded) and MASK in recorded:
            raise UsageError(
                f"this run's {FLAG} held credentials, which no run file records: give it again, "
                f"--resume RUN_DIR {FLAG} '{recorded}' with each {MASK} filled in"
            )
        return recorded
    if masked(given) != recorded:
        raise UsageError(f"{FLAG} {masked(given)} is not this run's storage ({recorded}): a resumed run goes on there")
    return given
