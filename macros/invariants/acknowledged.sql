{#- Acknowledgements (`cj-health ack`): the one definition of which problems they accept.
    An acknowledgement accepts a problem of its batch when it is active (it holds now:
    int_acknowledgements_joined_to_batches.is_active, not expired and still the batch it
    was given for) and it names the problem's code or no code (every code of the batch).
    The health view, the alert view, cj_batch_issues and the invariants all use this macro;
    Python reads what they built. As in the invariants that use it, `acknowledgements` is a
    relation name (int_acknowledgements_joined_to_batches). -#}

{#- Whether the acknowledgement row `acknowledgement` (an alias) accepts the code held by
    the expression `problem_code` (`null`: a problem without a code, which only a
    whole-batch acknowledgement accepts). -#}
{% macro acknowledgement_accepts(acknowledgement, problem_code) -%}
    (
        {{ acknowledgement }}.is_active
        and (
            {{ acknowledgement }}.problem_code is null
            or {{ acknowledgement }}.problem_code = {{ problem_code }}
        )
    )
{%- endmacro %}

{#- A condition: no acknowledgement of the batch `cj_batch_id` (an expression) accepts any of
    `problem_codes`, the codes that the invariant's failure shows as. An invariant without a
    problem code passes [] and only a whole-batch acknowledgement accepts it. (`not in`, not
    a correlated `not exists`: the outer relation may be aliased by GX, and
    acknowledgements.cj_batch_id is never null.) -#}
{% macro not_acknowledged(acknowledgements, cj_batch_id, problem_codes) -%}
    {{ cj_batch_id }} not in (
        select acknowledgement.cj_batch_id
        from {{ acknowledgements }} as acknowledgement
        where
            {% for code in problem_codes or [none] -%}
                {%- if not loop.first %} or {% endif -%}
                {{ acknowledgement_accepts(
                    'acknowledgement', "'" ~ code ~ "'" if code else 'null::text') }}
            {%- endfor %}
    )
{%- endmacro %}
