"""Every DAG imports cleanly, says who owns it and what it does, retries, and does no I/O against
connections while being parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.liveshop.settings import PROJECT_ROOT

DAGS_FOLDER = PROJECT_ROOT / "dags"
EXPECTED_DAG_IDS = {"liveshop_microbatch", "liveshop_retrain_models"}
#: Generous: a DAG that runs dbt or queries a database while parsing blows far past it.
PARSE_BUDGET_SECONDS = 30.0


class ConnectionLookupAtParseTime(AssertionError):
    pass


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook
    from airflow.sdk.definitions.connection import Connection

    def refuse(*args, **kwargs):
        raise ConnectionLookupAtParseTime(
            "a DAG looked up an Airflow connection while being parsed; move the lookup into a task"
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseHook, "get_connection", classmethod(refuse))
        patch.setattr(Connection, "get", classmethod(refuse))
        return DagBag(dag_folder=str(DAGS_FOLDER))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}, "\n".join(
        f"{path}:\n{error}" for path, error in dagbag.import_errors.items()
    )


def test_the_expected_dags_exist(dagbag) -> None:
    assert set(dagbag.dag_ids) == EXPECTED_DAG_IDS, "update EXPECTED_DAG_IDS when adding a DAG"


def test_parse_time_is_bounded(dagbag) -> None:
    stats = {Path(s.file).name: s.duration.total_seconds() for s in dagbag.dagbag_stats}
    assert stats, "no DAG files were parsed"
    total = sum(stats.values())
    assert total < PARSE_BUDGET_SECONDS, f"parsing took {total:.1f}s: {stats}"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAG_IDS))
def test_dag_is_documented_and_owned(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.doc_md and len(dag.doc_md) > 200, "set doc_md=__doc__ with a real description"
    assert dag.tags, "tag the DAG so it can be found in the UI"
    assert dag.schedule is not None, "every DAG here runs on a schedule"
    assert dag.catchup is False, "catch-up must be a deliberate choice; these DAGs take what is waiting"
    assert dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.owner not in ("", "airflow"), f"{task.task_id}: give the task a real owner"
        assert task.retries >= 1, f"{task.task_id}: tasks must retry transient failures"
        assert task.pool == "duckdb_warehouse", f"{task.task_id}: warehouse writers share the one-slot pool"


def test_microbatch_shape(dagbag) -> None:
    dag = dagbag.dags["liveshop_microbatch"]
    assert dag.schedule == "*/5 * * * *"
    ingest = dag.get_task("ingest_events")
    publish = dag.get_task("publish_serving")
    dbt_tasks = [t for t in dag.tasks if t.task_id.startswith("transform.")]
    assert {t.task_id.split(".")[1] for t in dbt_tasks} >= {
        "stg_liveshop__events_model_build",
        "fct_sessions_model_build",
        "fct_session_features_model_build",
    }
    # every dbt task runs after the ingest, and scoring after every dbt task
    score = dag.get_task("score_sessions")
    for task in dbt_tasks:
        assert ingest.task_id in task.get_flat_relative_ids(upstream=True)
        assert task.task_id in score.get_flat_relative_ids(upstream=True)
    assert score.task_id in publish.upstream_task_ids
    assert [outlet.name for outlet in publish.outlets] == ["liveshop_serving_copy"]
