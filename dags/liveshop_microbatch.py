"""
### Live-shopping micro-batch

Every few minutes (``LIVESHOP_MICROBATCH_SCHEDULE``, default every 5 minutes) this DAG moves the
events published since the last run from the bus into the warehouse and refreshes everything the
dashboard shows:

1. **ingest_events** pulls up to ``LIVESHOP_BATCH_MAX_MESSAGES`` messages, validates them against
   the event contract, appends the valid ones to `raw.raw_events` (deduplicated on `event_id`),
   sends the invalid ones to `raw.dead_letter_events` with the reason, and acknowledges them only
   after the load committed.
2. **transform** runs the dbt project (staging, sessions, marts) through cosmos, one task per model,
   each building the model and running its tests.
3. **score_sessions** writes a conversion probability for every session to `session_scores`,
   training a first model if none exists.
4. **publish_serving** copies the dashboard's tables to the serving file and swaps it into place.

Runs never overlap and missed intervals are not caught up: each run takes whatever is waiting.
Every task that writes the DuckDB warehouse runs in the one-slot pool `duckdb_warehouse`, because
DuckDB allows a single writing process. Re-running or clearing a run is safe: loads are idempotent.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

from include.liveshop.settings import get_settings

settings = get_settings()

SERVING_COPY = Asset(
    name="liveshop_serving_copy",
    uri=f"file://{settings.serving_path}",
)

if not settings.dbt_manifest.exists():
    raise FileNotFoundError(
        f"dbt manifest not found at {settings.dbt_manifest} (LIVESHOP_DBT_MANIFEST); "
        "build it with `make manifest` (runs `dbt parse` in include/dbt)"
    )

DBT_ENV = {
    "LIVESHOP_DUCKDB_PATH": str(settings.duckdb_path),
    # Each cosmos task builds one model with its tests. A test that spans two models (such as
    # fct_sessions -> dim_viewers) runs with the later of the two, once both exist.
    "DBT_INDIRECT_SELECTION": "buildable",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "SCARF_NO_ANALYTICS": "true",
}

default_args = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "pool": settings.warehouse_pool,
}

with DAG(
    dag_id="liveshop_microbatch",
    schedule=settings.microbatch_schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args=default_args,
    tags=["liveshop", "micro-batch", "ingest", "dbt"],
    doc_md=__doc__,
):

    @task
    def ingest_events(**context) -> dict[str, object]:
        """Pull, validate and load one batch; ack after commit. Returns counts only."""
        from include.liveshop.bus import get_subscriber
        from include.liveshop.ingest import run_ingest

        subscriber = get_subscriber(settings)
        try:
            batch_id = f"{context['run_id']}#{context['ti'].try_number}"
            return run_ingest(settings, subscriber, batch_id=batch_id).as_dict()
        finally:
            subscriber.close()

    transform = DbtTaskGroup(
        group_id="transform",
        project_config=ProjectConfig(
            dbt_project_path=settings.dbt_project_dir,
            manifest_path=settings.dbt_manifest,
            install_dbt_deps=False,
        ),
        profile_config=ProfileConfig(
            profile_name="liveshop",
            target_name=settings.dbt_target,
            profiles_yml_filepath=settings.dbt_project_dir / "profiles.yml",
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.LOCAL,
            invocation_mode=InvocationMode.SUBPROCESS,
            dbt_executable_path=settings.dbt_executable,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.BUILD,
        ),
        operator_args={"env": DBT_ENV, "append_env": True, "pool": settings.warehouse_pool},
        default_args=default_args,
    )

    @task
    def score_sessions() -> dict[str, object]:
        """Conversion probability for every session into session_scores."""
        from include.liveshop.scoring import score_sessions as score

        return score(settings)

    @task(outlets=[SERVING_COPY])
    def publish_serving() -> str:
        """Copy the dashboard's tables to the serving file and swap it into place."""
        from include.liveshop.warehouse import publish_serving_copy, require_duckdb

        require_duckdb(settings, "the serving copy")
        publish_serving_copy(settings.duckdb_path, settings.serving_path)
        return str(settings.serving_path)

    ingest_events() >> transform >> score_sessions() >> publish_serving()
