"""A real S3-compatible server for the tests: moto's server mode (`python -m moto.server`,
from the `moto[server]` dev dependency) as a child process on a free loopback port."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "modeldb-test", "AWS_SECRET_ACCESS_KEY": "modeldb-test",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3Server:
    endpoint_url: str

    def new_bucket(self) -> str:
        import boto3

        name = f"modeldb-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint_url, **_boto_credentials()).create_bucket(Bucket=name)
        return name

    def env(self, bucket: str, prefix: str = "artifacts") -> dict[str, str]:
        """The settings that put a `modeldb serve` store on this server."""
        return {**CREDENTIALS, "MODELDB_ARTIFACT_STORE": f"s3://{bucket}/{prefix}",
                "MODELDB_S3_ENDPOINT_URL": self.endpoint_url}


def _boto_credentials() -> dict[str, str]:
    return {"aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "region_name": CREDENTIALS["AWS_DEFAULT_REGION"]}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = free_port()
    log = open(Path(tmp_path_factory.mktemp("moto")) / "moto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {proc.returncode}")
            try:
                httpx.get(f"{url}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise TimeoutError("moto server did not start") from None
                time.sleep(0.1)
        yield S3Server(url)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 in the test process reads the standard AWS variables, as the server does."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
