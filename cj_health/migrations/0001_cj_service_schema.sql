-- The CJ Assessment service schema as the project first built it; 0002 brings it to production's head.
-- Applied by `cj-health db init` inside one transaction, recorded in cj_health_schema_migrations.

create type cj_batch_status_enum as enum (
    'PENDING',
    'FETCHING_CONTENT',
    'PERFORMING_COMPARISONS',
    'COMPLETE_STABLE',
    'COMPLETE_MAX_COMPARISONS',
    'COMPLETE_INSUFFICIENT_ESSAYS',
    'COMPLETE_FORCED_RECOVERY',
    'ERROR_PROCESSING',
    'ERROR_ESSAY_PROCESSING'
);

create type cj_batch_state_enum as enum (
    'INITIALIZING',
    'GENERATING_PAIRS',
    'WAITING_CALLBACKS',
    'SCORING',
    'COMPLETED',
    'FAILED',
    'CANCELLED'
);

create table cj_batch_uploads (
    id serial primary key,
    bos_batch_id varchar(36) not null,
    event_correlation_id varchar(36) not null,
    language varchar(10) not null,
    course_code varchar(50) not null,
    expected_essay_count integer not null,
    status cj_batch_status_enum not null,
    created_at timestamp without time zone default now(),
    updated_at timestamp without time zone default now(),
    completed_at timestamp without time zone,
    processing_metadata json,
    assignment_id varchar(100),
    user_id varchar(255),
    org_id varchar(255)
);
create index ix_cj_batch_uploads_bos_batch_id on cj_batch_uploads (bos_batch_id);
create index ix_cj_batch_uploads_status on cj_batch_uploads (status);
create index ix_cj_batch_uploads_user_id on cj_batch_uploads (user_id);
create index ix_cj_batch_uploads_org_id on cj_batch_uploads (org_id);

create table cj_batch_states (
    batch_id integer primary key references cj_batch_uploads (id) on delete cascade,
    state cj_batch_state_enum not null,
    total_budget integer,
    total_comparisons integer not null,
    submitted_comparisons integer default 0,
    completed_comparisons integer default 0,
    failed_comparisons integer default 0,
    last_activity_at timestamp with time zone not null default now(),
    partial_scoring_triggered boolean default false,
    completion_threshold_pct integer default 95,
    current_iteration integer default 0,
    processing_metadata json
);
create index ix_cj_batch_states_state on cj_batch_states (state);

create table cj_processed_essays (
    els_essay_id varchar(36) primary key,
    cj_batch_id integer not null references cj_batch_uploads (id) on delete cascade,
    text_storage_id varchar(256),
    assessment_input_text text,
    current_bt_score double precision,
    current_bt_se double precision,
    comparison_count integer not null,
    is_anchor boolean not null default false,
    created_at timestamp without time zone default now(),
    updated_at timestamp without time zone default now(),
    processing_metadata json
);
create index ix_cj_processed_essays_cj_batch_id on cj_processed_essays (cj_batch_id);
create index ix_cj_processed_essays_is_anchor on cj_processed_essays (is_anchor) where is_anchor;

create table cj_comparison_pairs (
    id serial primary key,
    cj_batch_id integer not null references cj_batch_uploads (id) on delete cascade,
    essay_a_els_id varchar(36) not null references cj_processed_essays (els_essay_id),
    essay_b_els_id varchar(36) not null references cj_processed_essays (els_essay_id),
    prompt_text text not null,
    request_correlation_id uuid,
    submitted_at timestamp with time zone,
    completed_at timestamp with time zone,
    winner varchar(20),
    confidence double precision,
    justification text,
    raw_llm_response text,
    error_code varchar(100),
    error_correlation_id uuid,
    error_timestamp timestamp with time zone,
    error_service varchar(100),
    error_details json,
    created_at timestamp without time zone default now(),
    processing_metadata json,
    pair_generation_mode varchar(20)
);
create index ix_cj_comparison_pairs_cj_batch_id on cj_comparison_pairs (cj_batch_id);
create index ix_cj_comparison_pairs_essay_a_els_id on cj_comparison_pairs (essay_a_els_id);
create index ix_cj_comparison_pairs_essay_b_els_id on cj_comparison_pairs (essay_b_els_id);

create table grade_projections (
    els_essay_id varchar(255) not null references cj_processed_essays (els_essay_id) on delete cascade,
    cj_batch_id integer not null references cj_batch_uploads (id) on delete cascade,
    primary_grade varchar(4) not null,
    grade_scale varchar(50) not null default 'swedish_8_anchor',
    confidence_score double precision not null,
    confidence_label varchar(10) not null,
    calculation_metadata json not null,
    population_prior double precision,
    created_at timestamp with time zone default now(),
    assessment_method varchar(50) default 'cj_assessment',
    model_used varchar(100),
    model_provider varchar(50),
    normalized_score double precision,
    primary key (els_essay_id, cj_batch_id)
);
create index ix_grade_projections_batch_grade on grade_projections (cj_batch_id, primary_grade);

create table anchor_essay_references (
    id serial primary key,
    anchor_label varchar(255) not null,
    grade varchar(4) not null,
    grade_scale varchar(50) not null,
    text_storage_id varchar(255),
    assignment_id varchar(100),
    created_at timestamp without time zone default now(),
    constraint uq_anchor_assignment_label_scale unique (assignment_id, anchor_label, grade_scale)
);

create table event_outbox (
    id uuid primary key default gen_random_uuid(),
    aggregate_id varchar(255) not null,
    aggregate_type varchar(100) not null,
    event_type varchar(255) not null,
    event_data json not null,
    topic varchar(255) not null,
    event_key varchar(255),
    created_at timestamp with time zone default now(),
    published_at timestamp with time zone,
    retry_count integer default 0,
    last_error text
);
create unique index ix_event_outbox_unpublished_aggregate_event
    on event_outbox (aggregate_id, event_type)
    where published_at is null;
