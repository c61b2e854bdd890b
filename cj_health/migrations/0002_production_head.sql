-- Brings a database made by 0001 to the production CJ service schema at its current head
-- (alembic 7edaa0e072e7): NOT NULL and defaults as production has them, enum labels in
-- production's database order, grade_projections' foreign keys without ON DELETE, production's
-- index names, no partial is_anchor index, anchor_essay_references.created_at with time zone,
-- and the assessment_instructions table (where a batch's grade scale comes from).
-- Column order is not production's for every table; no reader depends on it.

-- Two column types change below (upload status, anchor created_at). PostgreSQL refuses that
-- while a view reads the column, so views over those two tables (the monitoring views of a
-- dev database) are dropped here; `cj-health build` recreates them.
do $drop_dependent_views$
declare
    dependent record;
begin
    for dependent in
        select distinct view_ns.nspname as view_schema, view_class.relname as view_name,
            view_class.relkind
        from pg_catalog.pg_depend as dep
        inner join pg_catalog.pg_rewrite as rewrite on rewrite.oid = dep.objid
        inner join pg_catalog.pg_class as view_class on view_class.oid = rewrite.ev_class
        inner join pg_catalog.pg_namespace as view_ns on view_ns.oid = view_class.relnamespace
        where dep.classid = 'pg_catalog.pg_rewrite'::regclass
            and dep.refobjid in (
                'cj_batch_uploads'::regclass, 'anchor_essay_references'::regclass
            )
            and view_class.oid not in (
                'cj_batch_uploads'::regclass, 'anchor_essay_references'::regclass
            )
    loop
        if dependent.relkind = 'm' then
            execute format(
                'drop materialized view if exists %I.%I cascade',
                dependent.view_schema, dependent.view_name
            );
        else
            execute format(
                'drop view if exists %I.%I cascade', dependent.view_schema, dependent.view_name
            );
        end if;
        raise notice 'dropped %.% (it reads a column whose type changes); cj-health build recreates it',
            dependent.view_schema, dependent.view_name;
    end loop;
end
$drop_dependent_views$;

-- cj_batch_status_enum: production's label order (COMPLETE_INSUFFICIENT_ESSAYS and
-- COMPLETE_FORCED_RECOVERY were appended after the ERROR_* labels).
alter type cj_batch_status_enum rename to cj_batch_status_enum_0001;
create type cj_batch_status_enum as enum (
    'PENDING',
    'FETCHING_CONTENT',
    'PERFORMING_COMPARISONS',
    'COMPLETE_STABLE',
    'COMPLETE_MAX_COMPARISONS',
    'ERROR_PROCESSING',
    'ERROR_ESSAY_PROCESSING',
    'COMPLETE_INSUFFICIENT_ESSAYS',
    'COMPLETE_FORCED_RECOVERY'
);
alter table cj_batch_uploads
    alter column status type cj_batch_status_enum using status::text::cj_batch_status_enum;
drop type cj_batch_status_enum_0001;

alter table cj_batch_uploads
    alter column created_at set not null,
    alter column updated_at set not null;

alter table cj_batch_states
    alter column submitted_comparisons set not null,
    alter column completed_comparisons set not null,
    alter column failed_comparisons set not null,
    alter column partial_scoring_triggered set not null,
    alter column completion_threshold_pct set not null,
    alter column current_iteration set not null;

alter table cj_processed_essays
    alter column text_storage_id set not null,
    alter column assessment_input_text set not null,
    alter column created_at set not null,
    alter column updated_at set not null;
drop index if exists ix_cj_processed_essays_is_anchor;

alter table cj_comparison_pairs
    alter column created_at set not null;
create index ix_cj_comparison_pairs_request_correlation_id
    on cj_comparison_pairs (request_correlation_id);
create index ix_cj_comparison_pairs_pair_generation_mode
    on cj_comparison_pairs (pair_generation_mode);

-- grade_projections: both foreign keys without ON DELETE since 2025-11-12.
alter table grade_projections
    drop constraint grade_projections_els_essay_id_fkey,
    drop constraint grade_projections_cj_batch_id_fkey,
    add constraint grade_projections_els_essay_id_fkey
        foreign key (els_essay_id) references cj_processed_essays (els_essay_id),
    add constraint grade_projections_cj_batch_id_fkey
        foreign key (cj_batch_id) references cj_batch_uploads (id),
    alter column created_at set not null,
    alter column assessment_method set not null;
alter index ix_grade_projections_batch_grade rename to idx_batch_grade;
create index ix_grade_projections_grade_scale on grade_projections (grade_scale);

alter table anchor_essay_references
    alter column text_storage_id set not null,
    alter column created_at type timestamp with time zone,
    alter column created_at set not null,
    alter column grade_scale set default 'swedish_8_anchor';
create index ix_anchor_essay_references_grade on anchor_essay_references (grade);
create index ix_anchor_essay_references_assignment_id on anchor_essay_references (assignment_id);
create index ix_anchor_essay_references_grade_scale on anchor_essay_references (grade_scale);
create index ix_anchor_essay_references_anchor_label on anchor_essay_references (anchor_label);

alter table event_outbox
    alter column created_at set not null,
    alter column retry_count set not null;
alter index ix_event_outbox_unpublished_aggregate_event rename to idx_outbox_unique_unpublished;
create index ix_event_outbox_aggregate_id on event_outbox (aggregate_id);

-- Where a batch's grade scale comes from: the assignment's instruction, else the course's
-- (course_id = the upload's course_code), else swedish_8_anchor. Exactly one of assignment_id
-- and course_id is set.
create table assessment_instructions (
    id serial primary key,
    assignment_id varchar(100),
    course_id varchar(50),
    instructions_text text not null,
    created_at timestamp with time zone not null default now(),
    grade_scale varchar(50) not null default 'swedish_8_anchor',
    student_prompt_storage_id varchar(255),
    judge_rubric_storage_id varchar(255),
    context_origin varchar(64) not null default 'research_experiment',
    constraint chk_context_type check (
        (assignment_id is not null and course_id is null)
        or (assignment_id is null and course_id is not null)
    )
);
create unique index ix_assessment_instructions_assignment_id
    on assessment_instructions (assignment_id);
create index ix_assessment_instructions_course_id on assessment_instructions (course_id);
create index ix_assessment_instructions_grade_scale on assessment_instructions (grade_scale);
create index ix_assessment_instructions_student_prompt_storage_id
    on assessment_instructions (student_prompt_storage_id);
create index ix_assessment_instructions_judge_rubric_storage_id
    on assessment_instructions (judge_rubric_storage_id);
create index ix_assessment_instructions_context_origin
    on assessment_instructions (context_origin);
