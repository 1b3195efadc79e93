"""Dataset fingerprints: the same content is the same version, whatever holds it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import modeldb
from modeldb._data import as_path, file_digest, fingerprint


def test_a_file_and_its_bytes_and_text_agree(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    expected = "sha256:" + hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert fingerprint(path).digest == expected == file_digest(path)
    assert fingerprint(str(path)).digest == expected
    assert fingerprint(b"a,b\n1,2\n").digest == expected
    assert fingerprint("a,b\n1,2\n").digest == expected  # text, not a path
    found = fingerprint(path)
    assert (found.name, found.uri) == ("data.csv", path.absolute().as_uri())


def test_a_str_is_a_path_only_when_it_names_one(tmp_path: Path) -> None:
    assert as_path("no/such/file.csv") is None
    assert as_path(str(tmp_path)) == tmp_path
    with pytest.raises(modeldb.InvalidArgument, match="does not exist"):
        as_path(tmp_path / "missing.csv")


def test_folders_hash_their_files_and_names(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("1")
    (tmp_path / "d" / "sub" / "b.txt").write_text("2")
    first = fingerprint(tmp_path / "d").digest
    assert fingerprint(tmp_path / "d").digest == first
    (tmp_path / "d" / "sub" / "b.txt").rename(tmp_path / "d" / "sub" / "c.txt")
    assert fingerprint(tmp_path / "d").digest != first


def test_structured_data_is_stable_and_sensitive() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}).digest == fingerprint({"b": [1, 2], "a": 1}).digest
    assert fingerprint([1, 2, 3]).row_count == 3
    assert fingerprint([1, 2, 3]).digest != fingerprint([1, 2, 4]).digest
    with pytest.raises(modeldb.InvalidArgument, match="cannot fingerprint"):
        fingerprint(object())


def test_numpy_arrays_include_dtype_and_shape() -> None:
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    found = fingerprint(a)
    assert found.row_count == 3
    assert found.schema == {"dtype": "<i8", "shape": [3, 4]}
    assert fingerprint(a.copy()).digest == found.digest
    assert fingerprint(np.asfortranarray(a)).digest == found.digest  # layout is not content
    assert fingerprint(a.reshape(4, 3)).digest != found.digest
    assert fingerprint(a.astype(np.int32)).digest != found.digest
    objects = np.array([{"x": 1}, "y"], dtype=object)
    assert fingerprint(objects).digest == fingerprint(objects.copy()).digest


def test_pandas_frames() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    found = fingerprint(frame)
    assert found.row_count == 2
    assert found.schema is not None and found.schema["columns"]["a"] == "int64"
    assert found.schema["columns"]["b"] in ("object", "str")  # pandas 3 has a str dtype
    assert fingerprint(frame.copy()).digest == found.digest
    assert fingerprint(frame.assign(a=[1, 3])).digest != found.digest
    assert fingerprint(frame.rename(columns={"a": "c"})).digest != found.digest


def test_log_dataset_returns_a_content_addressed_version(tmp_path: Path) -> None:
    modeldb.init(tmp_path / "home")
    one = modeldb.log_dataset("iris", np.ones((5, 2)))
    two = modeldb.log_dataset("iris", np.ones((5, 2)))
    assert one == two
    assert one.id == f"iris@{one.digest}" and one.row_count == 5
    with pytest.raises(modeldb.InvalidArgument, match="name"):
        modeldb.start_run().log_input(b"bytes without a name")
