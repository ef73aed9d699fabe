{#-
    Seconds from start_at to end_at as a double, keeping sub-second parts
    (dbt.datediff counts whole boundaries, which is not a duration).
-#}
{% macro timestamp_diff_seconds(start_at, end_at) -%}
    {{ return(
        adapter.dispatch('timestamp_diff_seconds', 'liveshop')(start_at, end_at)
    ) }}
{%- endmacro %}

{% macro default__timestamp_diff_seconds(start_at, end_at) -%}
    cast(
        extract(epoch from ({{ end_at }}) - ({{ start_at }}))
        as {{ liveshop.type_double() }}
    )
{%- endmacro %}

{% macro duckdb__timestamp_diff_seconds(start_at, end_at) -%}
    cast(epoch_us({{ end_at }}) - epoch_us({{ start_at }}) as double)
    / 1000000
{%- endmacro %}

{% macro bigquery__timestamp_diff_seconds(start_at, end_at) -%}
    timestamp_diff({{ end_at }}, {{ start_at }}, microsecond) / 1000000
{%- endmacro %}
