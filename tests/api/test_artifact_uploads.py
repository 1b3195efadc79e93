"""Artifact storage over HTTP against a real `modeldb serve`, on the local store and on S3
(a real S3-compatible server: moto's server mode): whole-body upload, the resumable upload
protocol across a server restart, verification, dedupe, download, and refusals."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from modeldb.writer.artifacts import DigestMismatch, LocalArtifactStore, open_artifact_store
from modeldb.writer.s3_artifacts import S3ArtifactStore
from tests.helpers import ServerProcess, free_port, server_env
from tests.s3_server import S3Server, s3_credentials, s3_server  # noqa: F401  (fixtures)

MiB = 1024 * 1024
UPLOADS = "/api/v1/uploads"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "s3"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The server settings of each artifact store (S3: a fresh bucket on the moto server)."""
    if request.param == "local":
        return {}
    s3: S3Server = request.getfixturevalue("s3_server")
    request.getfixturevalue("s3_credentials")
    return s3.env(s3.new_bucket())


@pytest.fixture
def artifact_server(tmp_path: Path, store_env: dict[str, str]) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "home", free_port(), server_env(store_env))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def stored_on_s3(env: dict[str, str], digest: str) -> bool:
    import boto3

    bucket, _, prefix = env["MODELDB_ARTIFACT_STORE"].removeprefix("s3://").partition("/")
    hexdigest = digest.removeprefix("sha256:")
    listing = boto3.client("s3", endpoint_url=env["MODELDB_S3_ENDPOINT_URL"]).list_objects_v2(
        Bucket=bucket, Prefix=f"{prefix}/sha256/{hexdigest[:2]}/{hexdigest}")
    return listing.get("KeyCount", 0) == 1


def test_whole_body_upload_download_and_dedupe(artifact_server: ServerProcess,
                                               store_env: dict[str, str]) -> None:
    data = os.urandom(300_000)
    url = artifact_server.url
    put = httpx.post(f"{url}/api/v1/artifacts", content=data,
                     headers={"x-content-digest": digest_of(data)})
    assert put.status_code == 201, put.text
    assert put.json() == {"digest": digest_of(data), "size": len(data),
                          "uri": f"modeldb://artifacts/{digest_of(data)}"}
    assert httpx.get(f"{url}/api/v1/artifacts/{digest_of(data)}").content == data
    # Dedupe: the resumable protocol answers "stored" at once, nothing to send.
    again = httpx.post(f"{url}{UPLOADS}", json={"digest": digest_of(data), "size": len(data)})
    assert again.status_code == 200 and again.json()["status"] == "stored"
    wrong = httpx.post(f"{url}/api/v1/artifacts", content=b"x" * 10,
                       headers={"x-content-digest": digest_of(b"y")})
    assert wrong.status_code == 422
    assert httpx.get(f"{url}/api/v1/artifacts/{digest_of(b'x' * 10)}").status_code == 404
    if store_env:
        assert stored_on_s3(store_env, digest_of(data))


def test_resumable_upload_survives_a_server_restart(artifact_server: ServerProcess,
                                                    store_env: dict[str, str]) -> None:
    data = os.urandom(3 * MiB + 12345)
    digest, url = digest_of(data), artifact_server.url
    created = httpx.post(f"{url}{UPLOADS}", json={"digest": digest, "size": len(data)})
    assert created.status_code == 201, created.text
    upload_id = created.json()["upload_id"]
    assert created.json()["offset"] == 0
    for offset in (0, MiB):
        sent = httpx.patch(f"{url}{UPLOADS}/{upload_id}", content=data[offset:offset + MiB],
                           headers={"upload-offset": str(offset)})
        assert sent.status_code == 200, sent.text
        assert sent.json()["offset"] == offset + MiB

    artifact_server.kill()  # SIGKILL: no chance to save anything on the way out
    artifact_server.start()

    status = httpx.get(f"{url}{UPLOADS}/{upload_id}").json()
    assert status == {"upload_id": upload_id, "digest": digest, "size": len(data), "offset": 2 * MiB}
    head = httpx.head(f"{url}{UPLOADS}/{upload_id}")
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == (str(2 * MiB), str(len(data)))
    # Creating it again (a client that lost the id) finds the same upload at its offset.
    recreated = httpx.post(f"{url}{UPLOADS}", json={"digest": digest, "size": len(data)}).json()
    assert (recreated["upload_id"], recreated["offset"]) == (upload_id, 2 * MiB)
    # A client that believes it is elsewhere is told the real offset.
    stale = httpx.patch(f"{url}{UPLOADS}/{upload_id}", content=data[MiB:2 * MiB],
                        headers={"upload-offset": str(MiB)})
    assert stale.status_code == 409 and stale.json()["offset"] == 2 * MiB
    early = httpx.post(f"{url}{UPLOADS}/{upload_id}/complete")
    assert early.status_code == 409 and early.json()["offset"] == 2 * MiB

    rest = httpx.patch(f"{url}{UPLOADS}/{upload_id}", content=data[2 * MiB:],
                       headers={"upload-offset": str(2 * MiB)})
    assert rest.status_code == 200 and rest.json()["offset"] == len(data)
    done = httpx.post(f"{url}{UPLOADS}/{upload_id}/complete")
    assert done.status_code == 201, done.text
    assert done.json() == {"digest": digest, "size": len(data), "uri": f"modeldb://artifacts/{digest}"}
    assert httpx.get(f"{url}/api/v1/artifacts/{digest}", timeout=30).content == data
    assert httpx.get(f"{url}{UPLOADS}/{upload_id}").status_code == 404  # finished: gone
    assert httpx.post(f"{url}{UPLOADS}", json={"digest": digest, "size": len(data)}).json()["status"] \
        == "stored"
    if store_env:
        assert stored_on_s3(store_env, digest)
        assert not (artifact_server.home / "artifacts" / "sha256").exists()  # only staged locally


def test_a_corrupted_chunk_fails_the_digest_check_and_the_upload_is_discarded(
    artifact_server: ServerProcess,
) -> None:
    data = os.urandom(2 * MiB)
    digest, url = digest_of(data), artifact_server.url
    upload_id = httpx.post(f"{url}{UPLOADS}", json={"digest": digest, "size": len(data)}).json()["upload_id"]
    corrupted = bytearray(data[MiB:])
    corrupted[1000] ^= 0xFF  # one flipped bit on the way
    for offset, chunk in ((0, data[:MiB]), (MiB, bytes(corrupted))):
        assert httpx.patch(f"{url}{UPLOADS}/{upload_id}", content=chunk,
                           headers={"upload-offset": str(offset)}).status_code == 200
    done = httpx.post(f"{url}{UPLOADS}/{upload_id}/complete")
    assert done.status_code == 422
    assert digest in done.json()["error"] and "discarded" in done.json()["error"]
    assert httpx.get(f"{url}{UPLOADS}/{upload_id}").status_code == 404
    assert httpx.get(f"{url}/api/v1/artifacts/{digest}").status_code == 404
    # Starting again works, from zero.
    again = httpx.post(f"{url}{UPLOADS}", json={"digest": digest, "size": len(data)}).json()
    assert again["offset"] == 0


@pytest.mark.parametrize("store_env", ["local"], indirect=True)
def test_bad_requests_get_clear_errors(artifact_server: ServerProcess) -> None:
    url = artifact_server.url
    data = os.urandom(1000)
    digest = digest_of(data)

    def create(body: object) -> httpx.Response:
        return httpx.post(f"{url}{UPLOADS}", json=body)

    assert create({"digest": "md5:abc", "size": 3}).status_code == 400
    assert create({"digest": digest, "size": -1}).status_code == 400
    assert create({"digest": digest, "size": "10"}).status_code == 400
    assert create({"digest": digest, "size": 9 * 1024**3}).status_code == 413
    assert create([1, 2]).status_code == 400
    assert httpx.post(f"{url}{UPLOADS}", content=b"{not json").status_code == 400
    for unknown in ("0" * 32, "..", "not-an-id"):
        assert httpx.get(f"{url}{UPLOADS}/{unknown}").status_code == 404
        assert httpx.head(f"{url}{UPLOADS}/{unknown}").status_code == 404
        assert httpx.patch(f"{url}{UPLOADS}/{unknown}", content=b"x",
                           headers={"upload-offset": "0"}).status_code == 404
        assert httpx.post(f"{url}{UPLOADS}/{unknown}/complete").status_code == 404

    upload_id = create({"digest": digest, "size": len(data)}).json()["upload_id"]
    no_offset = httpx.patch(f"{url}{UPLOADS}/{upload_id}", content=data)
    assert no_offset.status_code == 400 and "Upload-Offset" in no_offset.json()["error"]
    past_end = httpx.patch(f"{url}{UPLOADS}/{upload_id}", content=data + b"extra",
                           headers={"upload-offset": "0"})
    assert past_end.status_code == 413 and past_end.json()["offset"] == 0
    assert httpx.get(f"{url}{UPLOADS}/{upload_id}").json()["offset"] == 0  # refused whole
    assert httpx.delete(f"{url}{UPLOADS}/{upload_id}").status_code == 204
    assert httpx.get(f"{url}{UPLOADS}/{upload_id}").status_code == 404


def test_an_unreachable_s3_store_answers_503_not_500(tmp_path: Path) -> None:
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
           "MODELDB_ARTIFACT_STORE": "s3://nowhere/p",
           "MODELDB_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}  # nothing listens
    server = ServerProcess(tmp_path / "home", free_port(), server_env(env)).start()
    try:
        data = b"model bytes"
        created = httpx.post(f"{server.url}{UPLOADS}", json={"digest": digest_of(data), "size": 11},
                             timeout=60)
        assert created.status_code == 503 and "artifact store unavailable" in created.json()["error"]
        whole = httpx.post(f"{server.url}/api/v1/artifacts", content=data, timeout=60)
        assert whole.status_code == 503
        assert httpx.get(f"{server.url}/api/v1/artifacts/{digest_of(data)}", timeout=60).status_code == 503
        assert not list((tmp_path / "home" / "artifacts" / "tmp").iterdir())  # nothing left behind
    finally:
        server.stop()


def test_s3_store_uses_multipart_and_content_addressed_keys(
    s3_server: S3Server, s3_credentials: None, tmp_path: Path,  # noqa: F811
) -> None:
    bucket = s3_server.new_bucket()
    store = S3ArtifactStore(bucket, "team/models", tmp_path / "staging",
                            endpoint_url=s3_server.endpoint_url, part_size=5 * MiB)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * MiB))
    stored = store.put_file(big)
    hexdigest = stored.digest.removeprefix("sha256:")
    key = f"team/models/sha256/{hexdigest[:2]}/{hexdigest}"
    assert store.key_of(stored.digest) == key
    head = store._s3.head_object(Bucket=bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-3")  # three parts: a multipart upload
    assert store.stat(stored.digest) == stored and stored.size == 11 * MiB
    assert b"".join(store.open_stream(stored.digest)) == big.read_bytes()
    assert store.stat(digest_of(b"absent")) is None
    with pytest.raises(ValueError, match="not a sha256 digest"):
        store.key_of("sha256:../../etc")


async def test_the_setting_names_the_store(s3_server: S3Server, s3_credentials: None,  # noqa: F811
                                           tmp_path: Path) -> None:
    assert isinstance(open_artifact_store("", tmp_path / "a"), LocalArtifactStore)
    for bad in ("s3://", "gs://bucket/p", "/some/folder"):
        with pytest.raises(ValueError, match="MODELDB_ARTIFACT_STORE"):
            open_artifact_store(bad, tmp_path / "a")
    store = open_artifact_store(f"s3://{s3_server.new_bucket()}/p", tmp_path / "staging",
                                s3_endpoint_url=s3_server.endpoint_url)
    assert isinstance(store, S3ArtifactStore)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    stored = await store.put_stream(chunks(), digest_of(b"abcdef"))
    assert (stored.digest, stored.size) == (digest_of(b"abcdef"), 6)
    assert await store.put_stream(chunks()) == stored  # stored once: content-addressed
    with pytest.raises(DigestMismatch):
        await store.put_stream(chunks(), digest_of(b"other"))
    assert not list((tmp_path / "staging" / "tmp").iterdir())  # staged files cleaned up
