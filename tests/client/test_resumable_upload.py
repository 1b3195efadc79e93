"""Large artifacts from the SDK: chunked, resumable uploads against a real `modeldb serve`
(on the local store and on S3, a real S3-compatible server), resumed after a server
restart or an aborted client with only the missing bytes sent, and deduped."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import modeldb
from modeldb import _client, _settings
from modeldb._data import file_digest
from modeldb._errors import RequestRejected, ServerUnavailable
from modeldb._http import HttpTransport
from modeldb._transports import Target
from tests.client.conftest import of_type, read_events
from tests.helpers import ServerProcess, free_port, server_env
from tests.s3_server import S3Server, s3_credentials, s3_server  # noqa: F401  (fixtures)

MiB = 1024 * 1024


class Aborted(Exception):
    """The client process "dies" mid-upload."""


@pytest.fixture(params=["local", "s3"])
def store_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    env: dict[str, str] = {}
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        request.getfixturevalue("s3_credentials")
        env = s3.env(s3.new_bucket())
    server = ServerProcess(tmp_path / "server-home", free_port(), server_env(env))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def transport_for(server: ServerProcess) -> HttpTransport:
    options = _settings.Options.load(upload_threshold=MiB, upload_chunk=MiB)
    return HttpTransport(Target("http", server.url), options)


def big_file(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(size))
    return path


def test_upload_resumes_after_a_server_restart_sending_only_the_rest(
    store_server: ServerProcess, tmp_path: Path,
) -> None:
    model = big_file(tmp_path, 5 * MiB + 777)
    size, digest = model.stat().st_size, file_digest(model)
    transport = transport_for(store_server)

    def kill_after_two_chunks(offset: int) -> None:
        if offset == 2 * MiB:
            store_server.kill()  # the server dies between two chunks, SIGKILL

    transport.uploads.on_chunk = kill_after_two_chunks
    with pytest.raises(ServerUnavailable):
        transport.put_artifact(model, digest)
    assert transport.uploads.sent == 2 * MiB

    store_server.start()  # same data folder: the upload's state is on its disk
    transport.uploads.on_chunk, transport.uploads.sent = None, 0
    blob = transport.put_artifact(model, digest)
    assert transport.uploads.sent == size - 2 * MiB  # only the missing bytes travelled
    assert (blob.digest, blob.size) == (digest, size)
    downloaded = httpx.get(f"{store_server.url}/api/v1/artifacts/{digest}", timeout=30)
    assert downloaded.content == model.read_bytes()

    transport.uploads.sent = 0
    assert transport.put_artifact(model, None) == blob  # dedupe: the server has it
    assert transport.uploads.sent == 0
    transport.close()


@pytest.mark.parametrize("store_server", ["local"], indirect=True)
def test_another_client_resumes_an_upload_an_aborted_client_began(
    store_server: ServerProcess, tmp_path: Path,
) -> None:
    model = big_file(tmp_path, 4 * MiB)
    first = transport_for(store_server)

    def abort_after_three_chunks(offset: int) -> None:
        if offset == 3 * MiB:
            raise Aborted

    first.uploads.on_chunk = abort_after_three_chunks
    with pytest.raises(Aborted):
        first.put_artifact(model, None)
    first.close()

    # A new process knows no upload id: the server finds the upload by digest and size.
    second = transport_for(store_server)
    blob = second.put_artifact(model, None)
    assert second.uploads.sent == MiB
    assert blob.digest == file_digest(model)
    assert httpx.get(f"{store_server.url}/api/v1/artifacts/{blob.digest}").content == model.read_bytes()
    second.close()


@pytest.mark.parametrize("store_server", ["local"], indirect=True)
def test_bad_bytes_on_the_server_cost_one_fresh_start_and_a_changed_file_is_refused(
    store_server: ServerProcess, tmp_path: Path,
) -> None:
    model = big_file(tmp_path, 3 * MiB)
    digest = file_digest(model)
    transport = transport_for(store_server)

    def abort_after_two_chunks(offset: int) -> None:
        if offset == 2 * MiB:
            raise Aborted

    transport.uploads.on_chunk = abort_after_two_chunks
    with pytest.raises(Aborted):
        transport.put_artifact(model, digest)
    # A crash of the server's machine left a bad byte in what it had acknowledged.
    (partial,) = (store_server.home / "artifacts" / "uploads").glob("*/data")
    with partial.open("r+b") as f:
        f.seek(12345)
        f.write(b"\x00" if model.read_bytes()[12345] else b"\x01")
    transport.uploads.on_chunk, transport.uploads.sent = None, 0
    blob = transport.put_artifact(model, digest)  # 422 at completion, then one fresh start
    assert transport.uploads.sent == MiB + 3 * MiB
    assert blob.digest == digest
    assert httpx.get(f"{store_server.url}/api/v1/artifacts/{digest}", timeout=30).content \
        == model.read_bytes()

    # A file that no longer has the digest the run recorded is refused, not stored.
    (tmp_path / "other").mkdir()
    changed = big_file(tmp_path / "other", 3 * MiB)
    with pytest.raises(RequestRejected) as refused:
        transport.put_artifact(changed, "sha256:" + "0" * 64)
    assert refused.value.status == 422
    assert not list((store_server.home / "artifacts" / "uploads").iterdir())  # discarded
    transport.close()


@pytest.mark.parametrize("store_server", ["local"], indirect=True)
def test_log_artifact_sends_large_files_in_chunks_and_small_ones_whole(
    store_server: ServerProcess, tmp_path: Path,
) -> None:
    modeldb.init(store_server.url, project="p", experiment="e", upload_threshold=2 * MiB,
                 upload_chunk=MiB)
    large = big_file(tmp_path, 3 * MiB + 5)
    small = tmp_path / "config.json"
    small.write_bytes(b'{"layers": 3}')
    with modeldb.start_run(name="big") as run:
        logged_large = run.log_artifact(large, kind="model")
        logged_small = run.log_artifact(small)
    uploads = _client.current().transport().uploads  # type: ignore[attr-defined]
    assert uploads.sent == large.stat().st_size  # the small file went as one plain request
    with modeldb.start_run(name="same-model-again") as again:
        again.log_artifact(large, kind="model")
    assert uploads.sent == large.stat().st_size  # deduped: no byte of it sent twice
    assert modeldb.flush(20)

    events = of_type(read_events(store_server.home / "events.db"), "ArtifactLogged")
    assert {(e["payload"]["name"], e["payload"]["digest"]) for e in events} == {
        ("model.bin", logged_large.digest), ("config.json", logged_small.digest)}
    assert logged_large.digest == file_digest(large) and logged_large.size == 3 * MiB + 5
    for artifact, path in ((logged_large, large), (logged_small, small)):
        downloaded = httpx.get(f"{store_server.url}/api/v1/artifacts/{artifact.digest}", timeout=30)
        assert downloaded.content == path.read_bytes()


@pytest.mark.parametrize("store_server", ["local"], indirect=True)
def test_log_artifact_rides_out_a_server_restart_mid_upload(
    store_server: ServerProcess, tmp_path: Path,
) -> None:
    """Through the SDK's own retries: the server dies after two chunks and comes back; the
    log_artifact call resumes where the server got to and every byte travels once."""
    modeldb.init(store_server.url, project="p", experiment="e", upload_threshold=MiB,
                 upload_chunk=MiB, retry_seconds=60)
    model = big_file(tmp_path, 4 * MiB + 1)
    uploads = _client.current().transport().uploads  # type: ignore[attr-defined]
    restarted: list[threading.Thread] = []

    def restart_after_two_chunks(offset: int) -> None:
        if offset == 2 * MiB and not restarted:
            store_server.kill()
            restarted.append(threading.Thread(target=store_server.start))
            restarted[0].start()  # back in a couple of seconds, while the SDK retries

    uploads.on_chunk = restart_after_two_chunks
    with modeldb.start_run(name="restart") as run:
        artifact = run.log_artifact(model)
    restarted[0].join(30)
    assert uploads.sent == model.stat().st_size  # 2 MiB before the crash + the rest after
    assert artifact.digest == file_digest(model)
    assert modeldb.flush(30)  # the run's events, held back while the server was away, arrive
    (logged,) = of_type(read_events(store_server.home / "events.db"), "ArtifactLogged")
    assert logged["payload"]["digest"] == artifact.digest
    downloaded = httpx.get(f"{store_server.url}/api/v1/artifacts/{artifact.digest}", timeout=30)
    assert downloaded.content == model.read_bytes()


def test_upload_options_are_checked() -> None:
    with pytest.raises(modeldb.ConfigError, match="upload_chunk"):
        modeldb.init("http://127.0.0.1:9", upload_chunk=0)
    with pytest.raises(modeldb.ConfigError, match="upload_chunk"):
        _settings.Options.load(upload_chunk=65 * MiB)
