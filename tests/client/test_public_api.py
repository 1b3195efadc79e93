"""The public surface changes only on purpose."""

import modeldb


def test_all_is_pinned() -> None:
    assert modeldb.__all__ == [
        "Artifact",
        "ConfigError",
        "DatasetVersion",
        "InvalidArgument",
        "ModelDBError",
        "ModelVersion",
        "QueryError",
        "RequestRejected",
        "Run",
        "RunInfo",
        "ServerUnavailable",
        "TransportError",
        "UnsupportedTransport",
        "active_run",
        "aflush",
        "attach_run",
        "autolog",
        "flush",
        "init",
        "log_dataset",
        "register_model",
        "search_runs",
        "set_alias",
        "set_stage",
        "start_run",
    ]
    assert all(hasattr(modeldb, name) for name in modeldb.__all__)
