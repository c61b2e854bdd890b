{#- Acknowledgements (`cj-health ack`), the one definition of which problems they accept.
    An active acknowledgement of a batch accepts the problem codes it names, or every code
    of the batch when its problem_code is null. As in the invariants that use it,
    `acknowledgements` is a relation name (stg_cj_monitoring__batch_acknowledgements). -#}

{#- Whether the acknowledgement row `acknowledgement` (an alias) accepts the code held by
    the expression `problem_code`. -#}
{% macro acknowledgement_accepts(acknowledgement, problem_code) -%}
    (
        {{ acknowledgement }}.problem_code is null
        or {{ acknowledgement }}.problem_code = {{ problem_code }}
    )
{%- endmacro %}

{#- A condition: no active acknowledgement of the batch `cj_batch_id` (an expression)
    accepts any of `problem_codes`, the codes that the invariant's failure shows as. An
    invariant without a problem code passes [] and only a whole-batch acknowledgement
    accepts it. (`not in`, not a correlated `not exists`: the outer relation may be aliased
    by GX, and acknowledgements.cj_batch_id is never null.) -#}
{% macro not_acknowledged(acknowledgements, cj_batch_id, problem_codes) -%}
    {{ cj_batch_id }} not in (
        select acknowledgement.cj_batch_id
        from {{ acknowledgements }} as acknowledgement
        where
            acknowledgement.is_active
            and (
                acknowledgement.problem_code is null
                {%- for code in problem_codes %}
                    or acknowledgement.problem_code = '{{ code }}'
                {%- endfor %}
            )
    )
{%- endmacro %}
