from __future__ import annotations

from pathlib import Path

import pytest

from include.liveshop.errors import ConfigError
from include.liveshop.settings import get_settings


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
        ({"LIVESHOP_MICROBATCH_SCHEDULE": "every 5 minutes"}, "LIVESHOP_MICROBATCH_SCHEDULE", "cron"),
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
