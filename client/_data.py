"""Content fingerprints for datasets: files, folders and in-memory data.

The same content always gives the same digest, so logging the same training data twice
names one DatasetVersion. Raw bytes (a file, `bytes`, a `str` as UTF-8) hash as they are,
so a file and its bytes in memory agree; structured data hashes a stable serialization
tagged with its kind. numpy and pandas are optional and never imported here unless the
caller already holds one of their objects.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modeldb._errors import InvalidArgument

_CHUNK = 1 << 20


@dataclass(frozen=True)
class DatasetVersion:
    """One content-addressed version of a dataset; `id` is "<dataset>@sha256:<hex>"."""

    dataset: str
    digest: str
    uri: str | None = None
    row_count: int | None = None
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", f"{self.dataset}@{self.digest}")


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    uri: str | None = None
    row_count: int | None = None
    schema: dict[str, Any] | None = None
    name: str | None = None  # a natural dataset name (a file's), when the data has one


def file_digest(path: str | os.PathLike[str]) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def _sha(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part)
    return f"sha256:{hasher.hexdigest()}"


def as_path(data: Any) -> Path | None:
    """A path the caller means: any PathLike, or a str naming an existing file or folder.

    Any other str is in-memory text, so a string of CSV is data, not a missing file.
    """
    if isinstance(data, os.PathLike):
        path = Path(data)
        if not path.exists():
            raise InvalidArgument(f"{path} does not exist")
        return path
    if isinstance(data, str) and len(data) < 4096 and "\n" not in data:
        path = Path(data).expanduser()
        try:
            if path.exists():
                return path
        except OSError:  # e.g. a name too long for the filesystem: it is text, not a path
            return None
    return None


def fingerprint(data: Any) -> Fingerprint:
    path = as_path(data)
    if path is not None:
        return _of_path(path)
    if isinstance(data, bytes | bytearray | memoryview):
        return Fingerprint(_sha(bytes(data)))
    if isinstance(data, str):
        return Fingerprint(_sha(data.encode()))
    module = type(data).__module__.partition(".")[0]
    if module == "numpy" and "numpy" in sys.modules:
        return _of_numpy(data)
    if module == "pandas" and "pandas" in sys.modules:
        return _of_pandas(data)
    if isinstance(data, list | tuple | dict):
        return _of_json(data)
    raise InvalidArgument(
        f"cannot fingerprint a {type(data).__name__}: pass a file path, bytes, str, "
        "list/dict, a numpy array, a pandas DataFrame or a DatasetVersion"
    )


def _of_path(path: Path) -> Fingerprint:
    uri = path.absolute().as_uri()
    if path.is_dir():
        # A folder is the sorted list of its files' relative paths and digests.
        lines = [
            f"{f.relative_to(path).as_posix()}\0{file_digest(f)}\n".encode()
            for f in sorted(path.rglob("*"))
            if f.is_file()
        ]
        return Fingerprint(_sha(b"folder\0", *lines), uri=uri, name=path.name)
    return Fingerprint(file_digest(path), uri=uri, name=path.name)


def _of_json(data: list[Any] | tuple[Any, ...] | dict[Any, Any]) -> Fingerprint:
    try:
        raw = orjson.dumps(
            data,
            option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
            default=_jsonable,
        )
    except TypeError as exc:
        raise InvalidArgument(f"cannot fingerprint this {type(data).__name__}: {exc}") from None
    rows = len(data) if isinstance(data, list | tuple) else None
    return Fingerprint(_sha(b"json\0", raw), row_count=rows)


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _of_numpy(array: Any) -> Fingerprint:
    import numpy as np

    array = np.asarray(array)
    schema = {"dtype": array.dtype.str, "shape": list(array.shape)}
    header = orjson.dumps(schema)
    if array.dtype.hasobject:
        # Object arrays hold pointers; hash what they point to instead.
        body = orjson.dumps(array.tolist(), option=orjson.OPT_NON_STR_KEYS, default=_jsonable)
    else:
        body = np.ascontiguousarray(array).tobytes()
    rows = int(array.shape[0]) if array.ndim else None
    return Fingerprint(_sha(b"numpy\0", header, b"\0", body), row_count=rows, schema=schema)


def _of_pandas(frame: Any) -> Fingerprint:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    if not isinstance(frame, pd.DataFrame):
        raise InvalidArgument(f"cannot fingerprint a pandas {type(frame).__name__}")
    schema = {"columns": {str(c): str(t) for c, t in frame.dtypes.items()}}
    header = orjson.dumps(schema)
    try:
        body = pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()
    except TypeError:  # unhashable cells (lists, dicts): fall back to the CSV text
        body = frame.to_csv().encode()
    return Fingerprint(_sha(b"pandas\0", header, b"\0", body), row_count=len(frame),
                       schema=schema)
