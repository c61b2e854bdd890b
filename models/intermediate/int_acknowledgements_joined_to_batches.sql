{#- Each acknowledgement with whether it holds now: the one definition of an active
    acknowledgement. It holds while it has not expired and the batch with its CJ batch id is
    still the batch it was given for (same bos_batch_id): a reseed hands the id to a new
    batch, which must not inherit it. Judged when the view is read, so an expiry or a
    replaced batch takes effect at once, with no refresh. Which problem codes an active
    acknowledgement accepts is macro acknowledgement_accepts. -#}
with acknowledgements as (
    select * from {{ ref('stg_cj_monitoring__batch_acknowledgements') }}
),

uploads as (
    select * from {{ ref('stg_cj__batch_uploads') }}
),

judged as (
    select
        acknowledgements.acknowledgement_id,
        acknowledgements.cj_batch_id,
        acknowledgements.bos_batch_id,
        acknowledgements.problem_code,
        acknowledgements.reason,
        acknowledgements.acknowledged_by,
        acknowledgements.acknowledged_at,
        acknowledgements.expires_at,
        coalesce(acknowledgements.expires_at <= now(), false) as is_expired,
        coalesce(
            uploads.bos_batch_id::text = acknowledgements.bos_batch_id, false
        ) as is_current_batch
    from acknowledgements
    left join uploads
        on acknowledgements.cj_batch_id = uploads.cj_batch_id
),

final as (
    select
        *,
        not is_expired and is_current_batch as is_active
    from judged
)

select * from final
