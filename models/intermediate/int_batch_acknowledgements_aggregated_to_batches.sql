{#- The acknowledgements in force, one row per batch that has any: which of its problem codes
    they accept, by the rule of macro acknowledgement_accepts (an acknowledgement with a code
    accepts that code, one without a code accepts every code), gathered per batch so that
    the alert view joins one small row per acknowledged batch. Read live by cj_batch_alerts, so
    `cj-health ack`, `unack` and an expiry take effect at once, without a refresh. -#}
with acknowledgements as (
    select * from {{ ref('int_acknowledgements_joined_to_batches') }}
    where is_active
),

aggregated as (
    select
        cj_batch_id,
        bool_or(problem_code is null) as accepts_every_issue,
        coalesce(
            array_agg(distinct problem_code order by problem_code)
            filter (where problem_code is not null),
            array[]::text[]
        ) as accepted_issues
    from acknowledgements
    group by cj_batch_id
)

select * from aggregated
