{#- The acknowledgements as `cj-health ack` wrote them. Whether one holds is judged in
    int_acknowledgements_joined_to_batches (the one definition). -#}
with source as (
    select * from {{ source('cj_monitoring', 'cj_batch_acknowledgements') }}
),

renamed as (
    select
        acknowledgement_id,
        cj_batch_id,
        bos_batch_id,
        problem_code,
        reason,
        acknowledged_by,
        acknowledged_at,
        expires_at
    from source
)

select * from renamed
