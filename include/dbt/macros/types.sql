{#- An 8-byte float; dbt.type_float() is a 4-byte real on some adapters. -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'liveshop')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro duckdb__type_double() -%}
    double
{%- endmacro %}

{% macro bigquery__type_double() -%}
    float64
{%- endmacro %}
