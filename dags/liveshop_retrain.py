"""
### Live-shopping model retraining

Once a week this DAG refits the session conversion model on every session in the warehouse and
replaces the stored model; the next micro-batch scores with it. The model card written beside the
model (`conversion_model.json` in ``LIVESHOP_MODEL_DIR``) records its version, the sessions it saw
and its hold-out AUC. Trigger it from the UI to retrain at once.

It reads the warehouse, so it shares the one-slot `duckdb_warehouse` pool with the micro-batch.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from include.liveshop.settings import get_settings

settings = get_settings()

with DAG(
    dag_id="liveshop_retrain_models",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-platform",
        "retries": 1,
        "retry_delay": timedelta(minutes=5),
        "pool": settings.warehouse_pool,
    },
    tags=["liveshop", "models"],
    doc_md=__doc__,
):

    @task
    def train_conversion_model() -> dict[str, object] | None:
        """Fit and store the conversion model; None when there are too few sessions yet."""
        from dataclasses import asdict

        from include.liveshop.scoring import train

        card = train(settings)
        return asdict(card) if card else None

    train_conversion_model()
