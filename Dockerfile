# One image for every service of docker-compose.yaml: Airflow with the platform's locked
# requirements in its own environment, dbt in a second one (cosmos calls it as a subprocess).
FROM apache/airflow:3.3.2-python3.11

USER root
RUN pip install --no-cache-dir "uv==0.13.9"
USER airflow

WORKDIR /opt/liveshop
COPY --chown=airflow:root requirements.lock requirements-dbt.lock ./
RUN uv pip install --no-cache --compile-bytecode --python "$(command -v python)" -r requirements.lock \
 && uv venv /opt/liveshop/.venv-dbt \
 && VIRTUAL_ENV=/opt/liveshop/.venv-dbt uv pip sync --no-cache --compile-bytecode requirements-dbt.lock

COPY --chown=airflow:root . .
ENV PYTHONPATH=/opt/liveshop \
    LIVESHOP_DBT_EXECUTABLE=/opt/liveshop/.venv-dbt/bin/dbt \
    LIVESHOP_DATA_DIR=/data \
    SCARF_NO_ANALYTICS=true \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false
RUN cd include/dbt && LIVESHOP_DUCKDB_PATH=/tmp/parse.duckdb /opt/liveshop/.venv-dbt/bin/dbt parse --quiet --profiles-dir . --project-dir .
