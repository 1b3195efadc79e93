"""The public surface changes only on purpose."""

import modeldb


def test_all_is_pinned() -> None:
    assert modeldb.__all__ == [
        "Artifact",
        "ConfigError",
        "DatasetVersion",
        "InvalidArgument",
        "MetricHistory",
        "ModelDBError",
        "ModelVersion",
        "QueryError",
        "RequestRejected",
        "Run",
        "RunComparison",
        "RunInfo",
        "ServerUnavailable",
        "TransportError",
        "UnsupportedTransport",
        "active_run",
        "aflush",
        "attach_run",
        "autolog",
        "compare_runs",
        "flush",
        "get_metric_history",
        "init",
        "log_dataset",
        "redact_run",
        "register_model",
        "search",
        "search_runs",
        "set_alias",
        "set_stage",
        "start_run",
    ]
    assert all(hasattr(modeldb, name) for name in modeldb.__all__)
