from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from include.liveshop.errors import ConfigError
from include.liveshop.settings import SCHEDULE_PRESETS, get_settings

SCHEDULE = "LIVESHOP_MICROBATCH_SCHEDULE"
BAD_SCHEDULES = [  # (value, what the message says)
    ("61 * * * *", "the minute field '61' is not valid"),
    ("0 24 * * *", "the hour field '24'"),
    ("0 0 32 * *", "the day of month field '32'"),
    ("0 0 * 13 *", "the month field '13'"),
    ("0 0 * * 8", "the day of week field '8'"),
    ("*/0 * * * *", "the minute field '*/0'"),
    # Stricter than Airflow, which accepts these: a date that never comes (Airflow would never run
    # the DAG), and croniter's seconds field, which Airflow itself calls inconsistent.
    ("0 0 30 2 *", "no date matches it, so the DAG would never run"),
    ("*/5 * * * * *", "not a cron expression of five fields"),
    ("@every5m", "not one of Airflow's presets: @once, @continuous, @hourly"),
    ("@reboot", "not one of Airflow's presets"),
]


def test_defaults_need_no_cloud_account(tmp_path: Path) -> None:
    settings = get_settings({"LIVESHOP_DATA_DIR": str(tmp_path)})
    assert (settings.warehouse, settings.bus) == ("duckdb", "local")
    assert settings.duckdb_path == tmp_path / "warehouse.duckdb"
    assert settings.serving_path == tmp_path / "serving.duckdb"
    assert settings.bus_path == tmp_path / "bus.sqlite3"
    assert settings.microbatch_schedule == "*/5 * * * *"
    assert settings.gcp_project is None


@pytest.mark.parametrize(
    ("env", "variable", "fragment"),
    [
        (
            {"LIVESHOP_WAREHOUSE": "postgres"},
            "LIVESHOP_WAREHOUSE",
            "'postgres' is not one of duckdb, bigquery",
        ),
        ({"LIVESHOP_BUS": "kafka"}, "LIVESHOP_BUS", "not one of local, pubsub"),
        ({"LIVESHOP_BUS": "pubsub"}, "LIVESHOP_GCP_PROJECT", "required with LIVESHOP_BUS=pubsub"),
        ({"LIVESHOP_BATCH_MAX_MESSAGES": "lots"}, "LIVESHOP_BATCH_MAX_MESSAGES", "not a whole number"),
        ({"LIVESHOP_CHUNK_SIZE": "0"}, "LIVESHOP_CHUNK_SIZE", "below the minimum of 1"),
        ({"LIVESHOP_ACK_DEADLINE_SECONDS": "5"}, "LIVESHOP_ACK_DEADLINE_SECONDS", "minimum of 10"),
        (
            {"LIVESHOP_ACK_DEADLINE_SECONDS": "601"},
            "LIVESHOP_ACK_DEADLINE_SECONDS",
            "601 is above the maximum of 600",
        ),
        ({"LIVESHOP_MICROBATCH_SCHEDULE": "every 5 minutes"}, "LIVESHOP_MICROBATCH_SCHEDULE", "cron"),
        *(({SCHEDULE: value}, SCHEDULE, fragment) for value, fragment in BAD_SCHEDULES),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_settings(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)
    assert fragment in str(info.value)


def test_pubsub_with_project_and_overrides(tmp_path: Path) -> None:
    settings = get_settings(
        {
            "LIVESHOP_BUS": "PubSub",
            "LIVESHOP_GCP_PROJECT": "shop-prod",
            "LIVESHOP_DUCKDB_PATH": str(tmp_path / "w.duckdb"),
            "LIVESHOP_MICROBATCH_SCHEDULE": "@hourly",
            "LIVESHOP_BATCH_MAX_MESSAGES": "500",
        }
    )
    assert settings.bus == "pubsub" and settings.gcp_project == "shop-prod"
    assert settings.duckdb_path == tmp_path / "w.duckdb"
    assert settings.microbatch_schedule == "@hourly"
    # a pull round never asks for more than the whole batch
    assert settings.pull_max_messages == 500


def _airflow_accepts(schedule: str) -> bool:
    """Whether Airflow builds and validates a DAG on ``schedule``, as its DAG processor does."""
    from airflow.sdk import DAG

    try:
        DAG("probe", schedule=schedule, start_date=datetime(2024, 1, 1), max_active_runs=1).validate()
    except Exception:  # any refusal is the answer
        return False
    return True


@pytest.mark.parametrize(
    "schedule",
    ["*/5 * * * *", "0 6 * * mon-fri", "30 2 1 */3 *", "0 0 L * *", "15,45 8-18 * * *", *SCHEDULE_PRESETS],
)
def test_every_schedule_accepted_is_one_airflow_accepts(schedule: str) -> None:
    assert get_settings({SCHEDULE: schedule}).microbatch_schedule == schedule
    assert _airflow_accepts(schedule)


@pytest.mark.parametrize(
    "schedule",
    ["61 * * * *", "0 24 * * *", "0 0 * 13 *", "*/0 * * * *", "H * * * *", "0 0 * * 1L", "@reboot", "@ONCE!"],
)
def test_schedules_airflow_refuses_are_refused(schedule: str) -> None:
    assert not _airflow_accepts(schedule)
    with pytest.raises(ConfigError, match=SCHEDULE):
        get_settings({SCHEDULE: schedule})


def test_the_presets_are_airflows() -> None:
    from airflow.utils.dates import cron_presets

    assert set(cron_presets) | {"@once", "@continuous"} <= set(SCHEDULE_PRESETS)


def test_presets_are_read_in_any_case() -> None:
    assert get_settings({SCHEDULE: "@Hourly"}).microbatch_schedule == "@hourly"
