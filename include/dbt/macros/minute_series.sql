{#-
    A join clause that repeats each row once per minute from start_minute to
    end_at (both included), exposing the minute as column_name. start_minute
    must already be truncated to the minute.

        from sessions
        {{ liveshop.minute_series('started_minute', 'ended_at', 'minute_at') }}
-#}
{% macro minute_series(start_minute, end_at, column_name) -%}
    {{ return(adapter.dispatch('minute_series', 'liveshop')(
        start_minute, end_at, column_name
    )) }}
{%- endmacro %}

{% macro default__minute_series(start_minute, end_at, column_name) -%}
    cross join lateral generate_series(
        {{ start_minute }}, {{ end_at }}, interval '1 minute'
    ) as minute_series ({{ column_name }})
{%- endmacro %}

{% macro duckdb__minute_series(start_minute, end_at, column_name) -%}
    cross join unnest(
        generate_series({{ start_minute }}, {{ end_at }}, interval 1 minute)
    ) as minute_series ({{ column_name }})
{%- endmacro %}

{% macro bigquery__minute_series(start_minute, end_at, column_name) -%}
    cross join unnest(
        generate_timestamp_array(
            {{ start_minute }}, {{ end_at }}, interval 1 minute
        )
    ) as {{ column_name }}
{%- endmacro %}
