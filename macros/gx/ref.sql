{#-
    ref() as dbt resolves it, except when the data tests are compiled as GX rules
    (var cj_gx_rules, set by cj_health.gx.rules): then a relation is named without database
    and schema, because GX's connection finds the monitoring schema on its search_path and
    the checked-in suites must run on any target.
-#}
{% macro ref() %}
    {%- set relation = builtins.ref(*varargs, **kwargs) -%}
    {%- if var('cj_gx_rules', false) -%}
        {%- do return(relation.include(database=false, schema=false)) -%}
    {%- endif -%}
    {%- do return(relation) -%}
{% endmacro %}
