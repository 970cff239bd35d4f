"""A real S3 API on 127.0.0.1 for the storage tests: moto's server (HTTP, the S3 REST API, with
credentials checked) in this pytest process, one per test session.

Its buckets live in this process, so the server can be stopped (connections refused, as a
bucket's endpoint that went away) and started again on the same port with nothing lost. It can
also listen inside a Ray test cluster's network namespace (support/local_cluster.py), whose nodes
reach only their own loopback: the listening socket is made in that namespace, by a thread
that entered it, and served from the same buckets.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import boto3

REGION = "us-east-1"
USER = "adience-bench"
# moto answers this many requests without credentials (to make the user and its key), then checks every one
SETUP_REQUESTS = 3
CLONE_NEWNET = 0x40000000
ALLOW_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def s3_unavailable() -> str | None:
    """Why the S3 tests cannot run here, or None."""
    try:
        import flask  # noqa: F401  (moto's server)
        import moto  # noqa: F401
    except ImportError as error:
        return f"needs the test extra's moto[s3] and flask ({error.name} missing): pip install -e '.[test]'"
    return None


@dataclass
class S3Server:
    """moto's S3 on 127.0.0.1:port, and, once ``listen_in`` is called, inside a network namespace too."""

    port: int = 0
    key: str = ""
    secret: str = ""
    _servers: dict[str | None, object] = field(default_factory=dict)  # namespace (None: this one) -> server

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        import moto.settings

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = SETUP_REQUESTS
        self._serve(None)
        iam = boto3.client(
            "iam", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
        )
        iam.create_user(UserName=USER)
        iam.put_user_policy(UserName=USER, PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
        made = iam.create_access_key(UserName=USER)["AccessKey"]
        self.key, self.secret = made["AccessKeyId"], made["SecretAccessKey"]
        return self

    def _serve(self, namespace: str | None) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        made: dict[str, object] = {}

        def serve() -> None:
            try:
                if namespace is not None:
                    enter_network_namespace(namespace)  # this thread only: the socket is made there
                app = DomainDispatcherApplication(create_backend_app)
                made["server"] = make_server("127.0.0.1", self.port, app, True, request_handler=MotoRequestHandler)
            except BaseException as error:
                made["error"] = error
                return
            finally:
                ready.set()
            made["server"].serve_forever()

        ready = threading.Event()
        threading.Thread(target=serve, daemon=True, name=f"s3-{namespace or 'local'}").start()
        ready.wait(30)
        if "error" in made:
            raise made["error"]
        self._servers[namespace] = made["server"]
        self.port = made["server"].server_address[1]

    def listen_in(self, namespace: str) -> None:
        """Serve the same buckets on 127.0.0.1:port inside network namespace ``namespace`` too."""
        self._serve(namespace)

    def close(self, namespace: str) -> None:
        """Stop listening in ``namespace`` (its socket would keep a removed namespace alive)."""
        server = self._servers.pop(namespace, None)
        if server is not None:
            server.shutdown()
            server.server_close()

    def stop(self) -> list[str | None]:
        """Close every listening socket (connections are refused); the buckets stay. Returns where
        it listened, for ``resume``."""
        stopped = list(self._servers)
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        self._servers.clear()
        return stopped

    def resume(self, where: list[str | None]) -> None:
        for namespace in where:
            self._serve(namespace)

    def environment(self) -> dict[str, str]:
        """The standard AWS variables that point a client (pyarrow, boto3) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
        )

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object's key under ``prefix``, listed through the S3 API."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def enter_network_namespace(name: str) -> None:
    """Move the calling thread into the network namespace ``ip netns add NAME`` made."""
    libc = ctypes.CDLL(None, use_errno=True)
    with Path(f"/var/run/netns/{name}").open() as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into network namespace {name}: {os.strerror(ctypes.get_errno())}")
