"""Configuration of the platform, read from the environment in one place.

Every variable has the prefix ``LIVESHOP_``. The defaults run the whole platform on one machine with
no cloud account: DuckDB as the warehouse and the local SQLite bus, with their files under
``LIVESHOP_DATA_DIR``. Production points the same code at Google Cloud with ``LIVESHOP_BUS=pubsub``
(and, later, ``LIVESHOP_WAREHOUSE=bigquery``).

``get_settings()`` validates everything it reads and raises ``ConfigError`` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from include.liveshop.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

WAREHOUSES = ("duckdb", "bigquery")
BUSES = ("local", "pubsub")
# The schedule presets Airflow 3 accepts: @once and @continuous are timetables of their own, the
# others cron aliases (Airflow's own, and @annually and @midnight, which its parser croniter knows).
SCHEDULE_PRESETS = (
    "@once",
    "@continuous",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
    "@annually",
    "@midnight",
)
CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build with ``get_settings()``; tests may build one directly."""

    data_dir: Path
    warehouse: str = "duckdb"
    duckdb_path: Path = field(default=Path())
    serving_path: Path = field(default=Path())
    bus: str = "local"
    bus_path: Path = field(default=Path())
    topic: str = "liveshop-events"
    subscription: str = "liveshop-events-ingest"
    gcp_project: str | None = None
    bq_dataset: str = "liveshop"
    bq_raw_dataset: str = "liveshop_raw"
    batch_max_messages: int = 50_000
    batch_max_seconds: int = 180
    pull_max_messages: int = 1_000
    chunk_size: int = 5_000
    ack_deadline_seconds: int = 60
    max_message_bytes: int = 64 * 1024
    microbatch_schedule: str = "*/5 * * * *"
    model_dir: Path = field(default=Path())
    dbt_project_dir: Path = PROJECT_ROOT / "include" / "dbt"
    dbt_executable: Path = PROJECT_ROOT / ".venv-dbt" / "bin" / "dbt"
    dbt_manifest: Path = PROJECT_ROOT / "include" / "dbt" / "target" / "manifest.json"
    warehouse_pool: str = "duckdb_warehouse"

    @property
    def dbt_target(self) -> str:
        return self.warehouse


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value or default


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _str(env, name, default).lower()
    if value not in choices:
        raise ConfigError(name, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"{raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(name, f"{value} is below the minimum of {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(name, f"{value} is above the maximum of {maximum}")
    return value


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    raw = env.get(name, "").strip()
    return Path(raw).expanduser().resolve() if raw else default


def _schedule(env: Mapping[str, str], name: str, default: str) -> str:
    """A schedule Airflow accepts: one of its presets, or a cron expression of five fields.

    Airflow refuses a bad schedule only when it parses the DAG file, where the DAG then simply
    disappears; checked here, the platform refuses to start instead.
    """
    value = _str(env, name, default)
    presets = ", ".join(SCHEDULE_PRESETS)
    if value.startswith("@"):
        if value.lower() not in SCHEDULE_PRESETS:
            raise ConfigError(name, f"{value!r} is not one of Airflow's presets: {presets}")
        return value.lower()
    if len(value.split()) != len(CRON_FIELDS):
        raise ConfigError(
            name,
            f"{value!r} is not a cron expression of five fields (e.g. '*/5 * * * *')"
            f" or one of Airflow's presets ({presets})",
        )
    problem = _cron_problem(value)
    if problem:
        raise ConfigError(name, f"{value!r} is not a cron expression Airflow accepts: {problem}")
    return value


def _cron_problem(expression: str) -> str | None:
    """What is wrong with a five-field cron expression, or None.

    Airflow validates a cron schedule by building a croniter for it; so does this. It also asks for
    the next run, as the scheduler will: croniter finds only then that '0 0 30 2 *' never comes.
    """
    try:
        croniter(expression).get_next()
    except CroniterBadDateError:
        return "no date matches it, so the DAG would never run"
    except CroniterBadCronError as error:
        fields = expression.split()
        for index, field_name in enumerate(CRON_FIELDS):
            alone = " ".join(field if i == index else "*" for i, field in enumerate(fields))
            try:
                croniter(alone)
            except CroniterBadCronError:
                return f"the {field_name} field {fields[index]!r} is not valid ({error})"
        return str(error)
    return None


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    data_dir = _path(env, "LIVESHOP_DATA_DIR", PROJECT_ROOT / ".data")
    warehouse = _choice(env, "LIVESHOP_WAREHOUSE", "duckdb", WAREHOUSES)
    bus = _choice(env, "LIVESHOP_BUS", "local", BUSES)
    gcp_project = env.get("LIVESHOP_GCP_PROJECT", "").strip() or None
    if gcp_project is None and (bus == "pubsub" or warehouse == "bigquery"):
        needed_by = "LIVESHOP_BUS=pubsub" if bus == "pubsub" else "LIVESHOP_WAREHOUSE=bigquery"
        raise ConfigError("LIVESHOP_GCP_PROJECT", f"required with {needed_by}; set it to your project id")
    batch_max = _int(env, "LIVESHOP_BATCH_MAX_MESSAGES", 50_000)
    settings = Settings(
        data_dir=data_dir,
        warehouse=warehouse,
        duckdb_path=_path(env, "LIVESHOP_DUCKDB_PATH", data_dir / "warehouse.duckdb"),
        serving_path=_path(env, "LIVESHOP_SERVING_PATH", data_dir / "serving.duckdb"),
        bus=bus,
        bus_path=_path(env, "LIVESHOP_BUS_PATH", data_dir / "bus.sqlite3"),
        topic=_str(env, "LIVESHOP_TOPIC", "liveshop-events"),
        subscription=_str(env, "LIVESHOP_SUBSCRIPTION", "liveshop-events-ingest"),
        gcp_project=gcp_project,
        bq_dataset=_str(env, "LIVESHOP_BQ_DATASET", "liveshop"),
        bq_raw_dataset=_str(env, "LIVESHOP_BQ_RAW_DATASET", "liveshop_raw"),
        batch_max_messages=batch_max,
        batch_max_seconds=_int(env, "LIVESHOP_BATCH_MAX_SECONDS", 180, minimum=5),
        pull_max_messages=min(_int(env, "LIVESHOP_PULL_MAX_MESSAGES", 1_000), batch_max),
        chunk_size=_int(env, "LIVESHOP_CHUNK_SIZE", 5_000),
        # Pub/Sub grants leases of 10 to 600 seconds; the local bus keeps to the same range.
        ack_deadline_seconds=_int(env, "LIVESHOP_ACK_DEADLINE_SECONDS", 60, minimum=10, maximum=600),
        max_message_bytes=_int(env, "LIVESHOP_MAX_MESSAGE_BYTES", 64 * 1024, minimum=1024),
        microbatch_schedule=_schedule(env, "LIVESHOP_MICROBATCH_SCHEDULE", "*/5 * * * *"),
        model_dir=_path(env, "LIVESHOP_MODEL_DIR", data_dir / "models"),
        dbt_project_dir=_path(env, "LIVESHOP_DBT_PROJECT_DIR", PROJECT_ROOT / "include" / "dbt"),
        dbt_executable=_path(env, "LIVESHOP_DBT_EXECUTABLE", PROJECT_ROOT / ".venv-dbt" / "bin" / "dbt"),
        dbt_manifest=_path(
            env, "LIVESHOP_DBT_MANIFEST", PROJECT_ROOT / "include" / "dbt" / "target" / "manifest.json"
        ),
        warehouse_pool=_str(env, "LIVESHOP_WAREHOUSE_POOL", "duckdb_warehouse"),
    )
    return settings
