{#- Generic test: every value of the column (each element when `is_array`) is a problem code
    of cj_problem_codes(), or one of `also`. Failing rows carry the unknown value. -#}
{% test known_problem_codes(model, column_name, also=[], is_array=false) %}
    {%- set known = [] -%}
    {%- for problem in cj_problem_codes() -%}
        {%- do known.append(problem.code) -%}
    {%- endfor -%}
    {%- do known.extend(also) -%}
    with observed as (
        {%- if is_array %}
            select observed_value.value
            from {{ model }}
            cross join lateral unnest({{ column_name }}) as observed_value (value)
        {%- else %}
            select {{ column_name }} as value
            from {{ model }}
        {%- endif %}
    )

    select value
    from observed
    where
        value is not null
        and value not in (
            {%- for code in known %}'{{ code }}'{% if not loop.last %}, {% endif %}{% endfor -%}
        )
{% endtest %}
