{#- A naive `timestamp` column of the service, read as timestamptz in the time zone the
    service writes it in (var `cj_source_timezone`, default UTC). -#}
{% macro cj_source_timestamp(column) -%}
    ({{ column }} at time zone '{{ var("cj_source_timezone") | replace("'", "''") }}')
{%- endmacro %}
