{#- The problem codes of cj_batch_health, worst first: the order decides `health_status` (the
    first issue of a batch). Each code has a severity (`critical` or `warning`; both alert)
    and the column that tells since when its condition holds (`since` in cj_batch_alerts).
    The rules themselves are in models/intermediate/int_batch_health.sql, one boolean column
    `has_<code in lower case>` per code; docs/problem_codes.md explains them in words. -#}
{% macro cj_problem_codes() %}
    {{ return([
        {'code': 'STUCK_FINALIZATION', 'severity': 'critical', 'since': 'last_activity_at',
         'summary': 'Upload COMPLETE_* but the state machine is still in WAITING_CALLBACKS or SCORING with no projections, for longer than stuck_after_minutes (the Batch 20 condition).'},
        {'code': 'SCORING_TOO_LONG', 'severity': 'critical', 'since': 'last_activity_at',
         'summary': 'State SCORING with no activity for longer than scoring_timeout_minutes: finalization crashed or hangs.'},
        {'code': 'COMPLETION_INCONSISTENT', 'severity': 'critical', 'since': 'last_activity_at',
         'summary': 'Upload status and state machine disagree: COMPLETE_* upload not COMPLETED (or without completed_at) after stuck_after_minutes, or a COMPLETED batch whose upload is not COMPLETE_* or lacks completed_at.'},
        {'code': 'MISSING_PROJECTIONS', 'severity': 'critical', 'since': 'completed_at',
         'summary': 'A COMPLETED batch with anchors has student essays without a grade projection.'},
        {'code': 'ANCHOR_FLAG_MISMATCH', 'severity': 'critical', 'since': 'created_at',
         'summary': 'The is_anchor column disagrees with processing_metadata.is_anchor on some essays (the Batch 20 repository bug).'},
        {'code': 'NO_ANCHORS', 'severity': 'critical', 'since': 'created_at',
         'summary': 'Anchors were expected (the assignment has anchors registered for the batch\'s grade scale, or essays say they are anchors) but no essay is flagged is_anchor (past INITIALIZING): no grades can be projected.'},
        {'code': 'ANCHOR_PROJECTED', 'severity': 'critical', 'since': 'completed_at',
         'summary': 'A grade projection was written for an anchor essay; anchors are never projected.'},
        {'code': 'MISATTRIBUTED_PROJECTION', 'severity': 'critical', 'since': 'completed_at',
         'summary': "A projection filed under this batch belongs to an essay of another batch."},
        {'code': 'EVENTS_MISSING', 'severity': 'critical', 'since': 'completed_at',
         'summary': 'A COMPLETED batch lacks its completion event or its result event in the outbox.'},
        {'code': 'EVENT_CORRELATION_MISMATCH', 'severity': 'critical', 'since': 'completed_at',
         'summary': "A finalization event does not carry the upload's event_correlation_id."},
        {'code': 'EVENTS_UNPUBLISHED', 'severity': 'critical', 'since': 'completed_at',
         'summary': 'An outbox event of the batch is still unpublished after unpublished_after_minutes, or the relay gave up on it (retry_count >= outbox_max_retries): downstream services never hear of the batch.'},
        {'code': 'STALLED', 'severity': 'warning', 'since': 'last_activity_at',
         'summary': 'State INITIALIZING, GENERATING_PAIRS or WAITING_CALLBACKS, upload status not ERROR_*, with no activity for longer than stalled_after_minutes.'},
        {'code': 'COUNTER_MISMATCH', 'severity': 'warning', 'since': 'completed_at',
         'summary': 'A COMPLETED batch whose submitted/completed/failed counters differ from its pairs (all / with a winner / errored).'},
        {'code': 'INVALID_PROJECTION', 'severity': 'warning', 'since': 'completed_at',
         'summary': 'A projection has a grade outside its scale, a confidence_score outside [0, 1], or a label other than HIGH, MID or LOW.'},
        {'code': 'INVALID_ANCHOR_METADATA', 'severity': 'warning', 'since': 'created_at',
         'summary': 'processing_metadata.is_anchor holds a value that is neither true/false, \'true\'/\'false\' nor 1/0.'},
        {'code': 'LOW_RELIABILITY', 'severity': 'warning', 'since': 'completed_at',
         'summary': 'The finished batch has at least min_reliability_students scored students and its scale separation reliability is below min_reliability: the comparisons do not separate the students.'},
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
