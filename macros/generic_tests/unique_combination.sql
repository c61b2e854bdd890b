{#- Generic test (model level): no two rows share the values of `columns`. Failing rows: the
    duplicated key and how often it occurs. -#}
{% test unique_combination(model, columns) %}
    select
        {{ columns | join(', ') }},
        count(*) as row_count
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}
