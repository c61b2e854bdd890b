{#- The problem codes as a relation (from the macro cj_problem_codes), for analysts, Grafana
    and the alert view. -#}
{%- set alerting = cj_alerting_severities() -%}

with problem_codes as (
    {%- for problem in cj_problem_codes() %}
        select
            '{{ problem.code }}'::text as problem_code,
            '{{ problem.severity }}'::text as severity,
            {{ loop.index }} as severity_rank,
            {{ 'true' if problem.severity in alerting else 'false' }} as is_alerting,
            '{{ problem.since }}'::text as since_column,
            '{{ problem.summary | replace("'", "''") }}'::text as rule_summary
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
)

select * from problem_codes
