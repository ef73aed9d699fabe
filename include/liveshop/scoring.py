"""Session conversion model: training and scoring (scikit-learn on the DuckDB default).

Features come from the dbt model ``fct_session_features``, which only counts what happened in a
session before its first order, so the model learns from what is known while a viewer is still
deciding. The model is a logistic regression over those counts plus one-hot device and region:
simple, fast to retrain, and its probabilities are calibrated enough to rank sessions to retarget.

The fitted model lives in ``LIVESHOP_MODEL_DIR`` as a joblib file with a JSON card beside it,
both replaced atomically. Scoring trains a first model when none exists; the weekly DAG retrains.
Until the warehouse holds enough sessions of both outcomes to fit anything, sessions are scored
with the observed conversion rate and ``model_version = 'base-rate'``, which the dashboard shows.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from include.liveshop import warehouse
from include.liveshop.settings import Settings

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

CATEGORICAL = ("device_type", "viewer_state")
NUMERIC = (
    "pit_product_views",
    "pit_chat_messages",
    "pit_add_to_carts",
    "pit_checkouts",
    "pit_distinct_products",
    "pit_seconds_active",
)
LABEL = "is_converted"
#: Fewest sessions of each outcome before a model is fitted.
MIN_SESSIONS_PER_CLASS = 10

MODEL_FILE = "conversion_model.joblib"
CARD_FILE = "conversion_model.json"


@dataclass(frozen=True)
class ModelCard:
    version: str
    trained_at: str
    sessions: int
    converted: int
    holdout_auc: float | None


def _features(con) -> pd.DataFrame:
    columns = ", ".join(("session_id", *CATEGORICAL, *NUMERIC, LABEL))
    frame = con.execute(f"select {columns} from main.fct_session_features").df()
    for name in CATEGORICAL:
        frame[name] = frame[name].fillna("unknown").astype(str)
    for name in NUMERIC:
        frame[name] = frame[name].astype(float).fillna(0.0)
    frame[LABEL] = frame[LABEL].astype(bool)
    return frame


def _pipeline() -> Pipeline:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prepare = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
            ("counts", StandardScaler(), list(NUMERIC)),
        ]
    )
    return Pipeline([("prepare", prepare), ("model", LogisticRegression(max_iter=1000))])


def _holdout_auc(frame: pd.DataFrame) -> float | None:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    labels = frame[LABEL]
    if labels.value_counts().min() < 2 * MIN_SESSIONS_PER_CLASS:
        return None
    train, test = train_test_split(frame, test_size=0.25, stratify=labels, random_state=0)
    fitted = _pipeline().fit(train[list(CATEGORICAL + NUMERIC)], train[LABEL])
    scores = fitted.predict_proba(test[list(CATEGORICAL + NUMERIC)])[:, 1]
    return float(roc_auc_score(test[LABEL], scores))


def train(settings: Settings, frame: pd.DataFrame | None = None) -> ModelCard | None:
    """Fit the model on every session in the warehouse and store it. None if data is too thin."""
    import joblib

    warehouse.require_duckdb(settings, "training")
    if frame is None:
        with warehouse.connect(settings.duckdb_path, read_only=True) as con:
            frame = _features(con)
    counts = frame[LABEL].value_counts()
    if len(counts) < 2 or counts.min() < MIN_SESSIONS_PER_CLASS:
        log.info("not enough sessions to train yet (%s)", counts.to_dict())
        return None
    model = _pipeline().fit(frame[list(CATEGORICAL + NUMERIC)], frame[LABEL])
    now = warehouse.utcnow()
    card = ModelCard(
        version=now.strftime("logreg-%Y%m%dT%H%M%S"),
        trained_at=now.isoformat(),
        sessions=len(frame),
        converted=int(frame[LABEL].sum()),
        holdout_auc=_holdout_auc(frame),
    )
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    _replace(settings.model_dir / MODEL_FILE, lambda path: joblib.dump(model, path))
    _replace(settings.model_dir / CARD_FILE, lambda path: path.write_text(json.dumps(asdict(card), indent=2)))
    log.info("trained conversion model %s", card)
    return card


def _replace(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    write(tmp)
    os.replace(tmp, target)


def load_model(settings: Settings) -> tuple[Pipeline, ModelCard] | None:
    import joblib

    model_path = settings.model_dir / MODEL_FILE
    card_path = settings.model_dir / CARD_FILE
    if not (model_path.exists() and card_path.exists()):
        return None
    return joblib.load(model_path), ModelCard(**json.loads(card_path.read_text()))


def score_sessions(settings: Settings) -> dict[str, object]:
    """Score every session into ``main.session_scores`` (replaced in one transaction)."""
    warehouse.require_duckdb(settings, "scoring")
    with warehouse.connect(settings.duckdb_path) as con:
        frame = _features(con)
        loaded = load_model(settings)
        if loaded is None and len(frame):
            train(settings, frame)
            loaded = load_model(settings)
        scored_at = warehouse.utcnow()
        scores = frame[["session_id"]].copy()
        if loaded is not None:
            model, card = loaded
            scores["conversion_probability"] = model.predict_proba(frame[list(CATEGORICAL + NUMERIC)])[:, 1]
            scores["model_version"] = card.version
        else:
            scores["conversion_probability"] = float(frame[LABEL].mean()) if len(frame) else 0.0
            scores["model_version"] = "base-rate"
        scores["scored_at"] = scored_at
        con.begin()
        con.execute(
            "create or replace table main.session_scores as select session_id, "
            "conversion_probability::double as conversion_probability, model_version, "
            "scored_at::timestamp as scored_at from scores"
        )
        con.commit()
    version = scores["model_version"].iloc[0] if len(scores) else None
    log.info("scored %s sessions with %s", len(scores), version)
    return {"sessions": len(scores), "model_version": version, "scored_at": datetime.isoformat(scored_at)}
