{#- The problem codes of cj_batch_health, worst first: the order decides `health_status` (the
    first issue of a batch). Each code has a severity (`critical` or `warning`; both alert)
    and the column that tells since when its condition holds (`since` in cj_batch_alerts).
    `summary` is the code's rule in words, its one home: the cj_problem_codes model lists it
    (rule_summary) and docs/problem_codes.md shows it (a test keeps the two equal). The rules
    themselves are in models/intermediate/int_batch_health.sql, one boolean column
    `has_<code in lower case>` per code. -#}
{% macro cj_problem_codes() %}
    {{ return([
        {'code': 'STUCK_FINALIZATION', 'severity': 'critical', 'since': 'last_activity_at',
         'summary': 'Upload status COMPLETE_*, state WAITING_CALLBACKS or SCORING, no grade projections, idle longer than `stuck_after_minutes`. The Batch 20 condition: the finalizer marked the upload complete but never moved the state machine.'},
        {'code': 'SCORING_TOO_LONG', 'severity': 'critical', 'since': 'last_activity_at',
         'summary': 'State SCORING, idle longer than `scoring_timeout_minutes`: finalization crashed or hangs after entering SCORING.'},
        {'code': 'COMPLETION_INCONSISTENT', 'severity': 'critical', 'since': 'last_activity_at',
         'summary': 'Upload status and state machine disagree: a COMPLETE_* upload whose state is not COMPLETED or whose `completed_at` is null, idle longer than `stuck_after_minutes`; or a COMPLETED state whose upload is not COMPLETE_* or has no `completed_at` (at once).'},
        {'code': 'MISSING_PROJECTIONS', 'severity': 'critical', 'since': 'completed_at',
         'summary': 'State COMPLETED, anchors present, not COMPLETE_INSUFFICIENT_ESSAYS (a single-essay batch is finished without scoring), and a student essay has no projection in the batch.'},
        {'code': 'ANCHOR_FLAG_MISMATCH', 'severity': 'critical', 'since': 'created_at',
         'summary': 'Some essay\'s `is_anchor` column differs from its readable `processing_metadata.is_anchor` (the Batch 20 repository bug: the projector sees no anchors).'},
        {'code': 'NO_ANCHORS', 'severity': 'critical', 'since': 'created_at',
         'summary': 'Anchors were expected, the batch has essays, none with `is_anchor` true, and it is past INITIALIZING: no grades can be projected. Anchors are expected when the batch\'s assignment has anchors registered for the batch\'s grade scale (the assignment\'s instruction, else the course\'s, else `swedish_8_anchor`), or its essays are anchors by metadata; never for COMPLETE_INSUFFICIENT_ESSAYS. A guest batch (no `assignment_id`) or an assignment without registered anchors has no anchors by design and is healthy.'},
        {'code': 'ANCHOR_PROJECTED', 'severity': 'critical', 'since': 'completed_at',
         'summary': 'A grade projection of one of the batch\'s anchors; anchors are never projected.'},
        {'code': 'MISATTRIBUTED_PROJECTION', 'severity': 'critical', 'since': 'completed_at',
         'summary': 'A projection filed under this batch belongs to an essay of another batch.'},
        {'code': 'EVENTS_MISSING', 'severity': 'critical', 'since': 'completed_at',
         'summary': 'State COMPLETED without the thin completion event (topic `huleedu.cj_assessment.completed.v1`, aggregate `cj_batch` = bos_batch_id) or without the rich result event (topic `huleedu.assessment.result.published.v1`, aggregate `assessment_result` = CJ batch id) in the outbox.'},
        {'code': 'EVENT_CORRELATION_MISMATCH', 'severity': 'critical', 'since': 'completed_at',
         'summary': 'A finalization event whose `event_data->>\'correlation_id\'` is not the upload\'s `event_correlation_id`.'},
        {'code': 'EVENTS_UNPUBLISHED', 'severity': 'critical', 'since': 'completed_at',
         'summary': 'An outbox row of the batch (completion, result, resource or failure event) is still unpublished `unpublished_after_minutes` after it was written, or the relay gave up on it (`retry_count` ≥ `outbox_max_retries`, 5 in production: the relay then leaves it unpublished for ever). The Essay Lifecycle Service never learns the batch finished.'},
        {'code': 'STALLED', 'severity': 'warning', 'since': 'last_activity_at',
         'summary': 'State INITIALIZING, GENERATING_PAIRS or WAITING_CALLBACKS, upload status not ERROR_*, idle longer than `stalled_after_minutes` (callbacks stopped arriving). An ERROR_* upload is finished: the service\'s error path sets the status wherever the state stood and sends a failure event.'},
        {'code': 'COUNTER_MISMATCH', 'severity': 'warning', 'since': 'completed_at',
         'summary': 'State COMPLETED and the counters disagree with the pairs: `submitted_comparisons` ≠ all pairs, `completed_comparisons` ≠ pairs with a winner, or `failed_comparisons` ≠ errored pairs.'},
        {'code': 'INVALID_PROJECTION', 'severity': 'warning', 'since': 'completed_at',
         'summary': 'A projection whose grade is not a grade of its scale (seed `cj_grade_scales`, from the service\'s grade scale registry, below-lowest grades included), whose `confidence_score` is outside [0, 1], or whose label is not HIGH, MID or LOW.'},
        {'code': 'INVALID_ANCHOR_METADATA', 'severity': 'warning', 'since': 'created_at',
         'summary': '`processing_metadata.is_anchor` is present but none of the readable values (e.g. `"yes"`, `2`, an object).'},
        {'code': 'LOW_RELIABILITY', 'severity': 'warning', 'since': 'completed_at',
         'summary': 'State COMPLETED or upload COMPLETE_*, at least `min_reliability_students` scored students, and `scale_separation_reliability` below `min_reliability`: the comparisons do not separate the students.'},
    ]) }}
{% endmacro %}


{#- Severities that make a batch alert (`is_alerting`). -#}
{% macro cj_alerting_severities() %}
    {{ return(['critical', 'warning']) }}
{% endmacro %}


{#- A numeric threshold var, refused at compile time when it is not a finite number in its
    range: minutes 0 or more, min_reliability from 0 to 1 (.nan, .inf and negatives too). -#}
{% macro cj_threshold(name) %}
    {%- set value = var(name) -%}
    {%- if value is not number or value is boolean -%}
        {{ exceptions.raise_compiler_error(
            "var " ~ name ~ " must be a number, got " ~ value ~ "") }}
    {%- endif -%}
    {%- set high = 1 if name == 'min_reliability' else 1e9 -%}
    {#- NaN fails every comparison, infinity fails the upper bound -#}
    {%- if not (value >= 0 and value <= high) -%}
        {{ exceptions.raise_compiler_error(
            "var " ~ name ~ " must be a finite number from 0 to " ~ high ~ ", got " ~ value) }}
    {%- endif -%}
    {{- return(value) -}}
{% endmacro %}


{#- The moment the verdict is judged at: now() (at refresh time), or var `health_as_of`. -#}
{% macro cj_health_as_of() %}
    {%- set as_of = var('health_as_of', none) -%}
    {%- if as_of is none -%}
        now()
    {%- else -%}
        cast('{{ as_of | replace("'", "''") }}' as timestamptz)
    {%- endif -%}
{% endmacro %}


{#- When a problem's condition began, as far as the data tells, from the code's `since`:
    the last activity for conditions of time passing, the completion (else the last
    activity) for faults of finalization, the batch's creation for faults in the rows written
    when the batch was set up. `relation` qualifies the columns (optional). -#}
{% macro cj_since_expression(since, relation=none) %}
    {%- set prefix = relation ~ '.' if relation else '' -%}
    {%- if since == 'last_activity_at' -%}
        {{ prefix }}last_activity_at
    {%- elif since == 'completed_at' -%}
        coalesce({{ prefix }}completed_at, {{ prefix }}last_activity_at)
    {%- elif since == 'created_at' -%}
        {{ prefix }}created_at
    {%- else -%}
        {{ exceptions.raise_compiler_error("unknown since column " ~ since) }}
    {%- endif -%}
{% endmacro %}
