"""The relational read model: normalised tables with typed numeric columns and the
composite indexes the runs query filters and sorts on. Times are epoch milliseconds."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)

metadata = MetaData()
PREFIX = 200  # characters of a text value held in its index
ID = String(700)
KEY = String(250)

projects = Table(
    "projects",
    metadata,
    Column("name", ID, primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", BigInteger),
    Column("deleted", Boolean, nullable=False, default=False),
)

experiments = Table(
    "experiments",
    metadata,
    Column("id", ID, primary_key=True),  # "<project>/<name>"
    Column("project", ID, nullable=False),
    Column("name", ID, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", BigInteger),
    Column("deleted", Boolean, nullable=False, default=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("project", ID),
    Column("experiment", ID),  # experiment name; (project, experiment) names it
    Column("name", ID),
    Column("status", String(16), nullable=False, default="RUNNING"),
    Column("start_time", BigInteger),
    Column("end_time", BigInteger),
    Column("parent_id", ID),
    Column("deleted", Boolean, nullable=False, default=False),
    Index("runs_by_experiment", "project", "experiment", "start_time"),
    Index("runs_by_start", "start_time"),
    Index("runs_by_parent", "parent_id"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("key", KEY, primary_key=True),
    Column("value", Text, nullable=False),
    Column("value_num", Float),  # set when the value reads as a number, so 0.01 < 0.1 holds
    Index("params_by_key_num", "key", "value_num"),
)
# Text values can be longer than a B-tree entry allows (PostgreSQL: ~2.7 kB), so the text
# indexes hold a prefix; filters compare the prefix first, then the whole value.
Index("params_by_key_text", params.c.key, func.substr(params.c.value, 1, PREFIX))

metric_points = Table(
    "metric_points",
    metadata,
    Column("run_id", ID, nullable=False),
    Column("key", KEY, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float),  # SQLite stores NaN as NULL; PostgreSQL keeps NaN
    Index("metric_points_by_run_key", "run_id", "key", "step", "timestamp"),
)

# Per-series extremes of aligned step blocks at a few widths (projectors/metric_rollups.py),
# so that a downsampled history reads rollups instead of every point.
metric_rollups = Table(
    "metric_rollups",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("key", KEY, primary_key=True),
    Column("width", Integer, primary_key=True),
    Column("bucket", BigInteger, primary_key=True),  # steps [bucket * width, (bucket + 1) * width)
    Column("count", BigInteger, nullable=False),
    Column("min_value", Float),  # of the finite values; NULL when there are none
    Column("min_step", BigInteger),
    Column("min_timestamp", BigInteger),
    Column("max_value", Float),
    Column("max_step", BigInteger),
    Column("max_timestamp", BigInteger),
)

latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("key", KEY, primary_key=True),
    Column("value", Float),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("min_value", Float),  # of the finite values; NULL when there are none
    Column("max_value", Float),
    Column("first_value", Float),
    Column("first_step", BigInteger, nullable=False),
    Column("first_timestamp", BigInteger, nullable=False),
    Column("count", BigInteger, nullable=False),
    Index("latest_metrics_by_key_value", "key", "value"),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("key", KEY, primary_key=True),
    Column("value", Text, nullable=False),
)
Index("tags_by_key_value", tags.c.key, func.substr(tags.c.value, 1, PREFIX))

attributes = Table(
    "attributes",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("key", KEY, primary_key=True),
    Column("value", Text),
    Column("value_num", Float),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("name", ID, primary_key=True),
    Column("digest", String(71), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("uri", Text, nullable=False),
    Column("kind", KEY, nullable=False),
    Column("media_type", KEY),
    Index("artifacts_by_digest", "digest"),
)

code_versions = Table(
    "code_versions",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("commit", String(64), nullable=False),
    Column("repository", Text),
    Column("branch", Text),
    Column("dirty", Boolean, nullable=False),
    Column("diff_digest", String(71)),
)

environments = Table(
    "environments",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("python", String(100), nullable=False),
    Column("platform", String(200), nullable=False),
    Column("packages", Text, nullable=False),  # JSON object name → version
)

datasets = Table(
    "datasets",
    metadata,
    Column("name", ID, primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", BigInteger),
    Column("deleted", Boolean, nullable=False, default=False),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", ID, primary_key=True),  # "<dataset>@sha256:<hex>"
    Column("dataset", ID, nullable=False),
    Column("digest", String(71), nullable=False),
    Column("uri", Text),
    Column("data_schema", Text),  # JSON
    Column("row_count", BigInteger),
    Column("created_at", BigInteger),
    Index("dataset_versions_by_dataset", "dataset", "created_at"),
)

run_links = Table(
    "run_links",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("direction", String(6), primary_key=True),  # "input" | "output"
    Column("kind", String(20), primary_key=True),
    Column("entity_id", ID, primary_key=True),
    Column("name", ID),
    Index("run_links_by_entity", "kind", "entity_id"),
)

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", ID, primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("tags", Text, nullable=False, default="{}"),
    Column("created_at", BigInteger),
    Column("deleted", Boolean, nullable=False, default=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model", ID, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("run_id", ID),
    Column("artifact_name", ID),
    Column("artifact_digest", String(71)),
    Column("source_uri", Text),
    Column("description", Text, nullable=False, default=""),
    Column("stage", String(16), nullable=False, default="None"),
    Column("created_at", BigInteger),
    Column("deleted", Boolean, nullable=False, default=False),
    Index("model_versions_by_run", "run_id"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model", ID, primary_key=True),
    Column("alias", KEY, primary_key=True),
    Column("version", Integer, nullable=False),
)

# -- registry governance and deployments (migration 2) ---------------------------------------

model_governance = Table(
    "model_governance",
    metadata,
    Column("model", ID, primary_key=True),
    Column("lock_level", String(10), nullable=False, default="open"),
    Column("lock_role", KEY),
    Column("lock_comment", Text),
    Column("locked_by", KEY),
    Column("locked_at", BigInteger),
    Column("single_production", Boolean, nullable=False, default=False),
    Column("approval_required", Text, nullable=False, default="[]"),  # JSON list of stages
)

model_transitions = Table(
    "model_transitions",
    metadata,
    Column("model", ID, primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("from_stage", String(16)),
    Column("to_stage", String(16), nullable=False),
    Column("actor", KEY),
    Column("comment", Text, nullable=False, default=""),
    Column("cause", String(10), nullable=False, default="direct"),
    Column("request_id", String(200)),
    Column("at", BigInteger, nullable=False),  # recorded_at, epoch ms
    Index("model_transitions_by_version", "model", "version", "at"),
)

transition_requests = Table(
    "transition_requests",
    metadata,
    Column("model", ID, primary_key=True),
    Column("request_id", String(200), primary_key=True),
    # Nullable, as every column a decision's upsert leaves out must be (PostgreSQL checks
    # NOT NULL before it sees the conflict).
    Column("version", Integer),
    Column("from_stage", String(16)),
    Column("to_stage", String(16)),
    Column("status", String(10), nullable=False, default="pending"),
    Column("requested_by", KEY),
    Column("requested_at", BigInteger),
    Column("comment", Text, nullable=False, default=""),
    Column("decided_by", KEY),
    Column("decided_at", BigInteger),
    Column("decision_comment", Text),
    Index("transition_requests_by_status", "status", "model"),
)

deploy_environments = Table(
    "deploy_environments",
    metadata,
    Column("name", ID, primary_key=True),
    Column("stage", KEY, nullable=False),
    Column("location", Text, nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("registered_at", BigInteger),
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("model", ID),
    Column("version", Integer),
    Column("environment", ID),
    Column("status", String(10), nullable=False, default="pending"),
    Column("message", Text, nullable=False, default=""),
    Column("endpoint", Text),
    Column("created_by", KEY),
    Column("created_at", BigInteger),
    Column("updated_at", BigInteger),
    Index("deployments_by_version", "model", "version"),
    Index("deployments_by_environment", "environment", "status"),
)

deployment_history = Table(
    "deployment_history",
    metadata,
    Column("deployment_id", String(200), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("status", String(10), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("actor", KEY),
    Column("at", BigInteger, nullable=False),
)

REGISTRY_TABLES = (model_governance, model_transitions, transition_requests, deploy_environments,
                   deployments, deployment_history)
