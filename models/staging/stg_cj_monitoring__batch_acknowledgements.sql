{#- Acknowledgements, with whether each holds now: judged when the view is read, so an
    expired acknowledgement stops holding at once, with no refresh. -#}
with source as (
    select * from {{ source('cj_monitoring', 'cj_batch_acknowledgements') }}
),

renamed as (
    select
        acknowledgement_id,
        cj_batch_id,
        problem_code,
        reason,
        acknowledged_by,
        acknowledged_at,
        expires_at,
        coalesce(expires_at > now(), true) as is_active
    from source
)

select * from renamed
