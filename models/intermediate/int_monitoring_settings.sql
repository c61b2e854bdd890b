{#- The settings `cj-health` applies outside dbt, as the dbt run that built this view resolved
    its vars (dbt_project.yml, or `--vars` of that run): how long the monitoring's own tables
    keep rows (cj_health/history.py, cj_health/runs.py prune by them) and the session
    settings of a refresh of cj_batch_health (var cj_refresh_settings, which the model's
    pre-hook applies too). One row per setting; nothing from the service tables. -#}
with retention as (
    {%- for name in ['history_retention_days', 'incident_retention_days', 'run_retention_days'] %}
        select
            '{{ name }}'::text as setting_name,
            '{{ cj_retention_days(name) }}'::text as setting_value
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
),

refresh_settings as (
    {%- set refresh = var('cj_refresh_settings', {}) %}
    {%- for name, value in refresh.items() %}
        select
            'refresh.{{ name | replace("'", "''") }}'::text as setting_name,
            '{{ value | replace("'", "''") }}'::text as setting_value
        union all
    {%- endfor %}
    select
        null::text as setting_name,
        null::text as setting_value
    where false
),

settings as (
    select * from retention
    union all
    select * from refresh_settings
)

select * from settings
