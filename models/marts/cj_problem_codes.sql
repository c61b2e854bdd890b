{#- The problem codes as a relation (from the macro cj_problem_codes), for analysts, Grafana
    and the alert view. One VALUES list: the alert rules read it through cj_batch_alerts on
    every evaluation, and a list is planned in a fraction of the time a union of one select
    per code takes. -#}
{%- set alerting = cj_alerting_severities() -%}

with problem_codes as (
    select
        problem_code,
        severity,
        severity_rank,
        is_alerting,
        since_column,
        rule_summary
    from (
        values
        {%- for problem in cj_problem_codes() %}
            (
                '{{ problem.code }}'::text,
                '{{ problem.severity }}'::text,
                {{ loop.index }},
                {{ 'true' if problem.severity in alerting else 'false' }},
                '{{ problem.since }}'::text,
                '{{ problem.summary | replace("'", "''") }}'::text
            ){% if not loop.last %},{% endif %}
        {%- endfor %}
    ) as problem_code_list (
        problem_code, severity, severity_rank, is_alerting, since_column, rule_summary
    )
)

select * from problem_codes
