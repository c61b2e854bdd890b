"""`cj-health eng5 finalize CJ_BATCH_ID`: finishes a dev batch that an interrupted
`eng5 execute` left behind, through the same finalizer and relay step; guarded like every
dev-data writer; a bad or unknown id is exit 4."""

from __future__ import annotations

import pytest
from conftest import table_fingerprint

from cj_health import cli
from cj_health.db import Database, connect
from cj_health.eng5.runner import execute_batch
from cj_health.errors import EXIT_NOT_FOUND, EXIT_REFUSED
from cj_health.schema import SERVICE_TABLES


def batch_summary(database: Database, cj_batch_id: int) -> tuple:
    with connect(database) as conn:
        return conn.execute(
            "select u.status::text, s.state::text, "
            "(select count(*) from grade_projections p where p.cj_batch_id = u.id), "
            "(select count(*) from event_outbox o where o.aggregate_id in "
            "(u.bos_batch_id, u.id::text) and o.published_at is not null), "
            "(select count(*) from event_outbox o where o.published_at is null) "
            "from cj_batch_uploads u join cj_batch_states s on s.batch_id = u.id "
            "where u.id = %s",
            (cj_batch_id,),
        ).fetchone()


@pytest.fixture
def waiting_batch(cj_env, tmp_path) -> int:
    """A batch with every callback in, waiting for its finalizer (as a stopped run leaves it)."""
    made = execute_batch(cj_env, students=4, max_comparisons=40, out_dir=tmp_path, finalize=False)
    return made.cj_batch_id


def test_finalize_completes_a_waiting_batch_and_publishes_its_events(
    cj_env, waiting_batch, capsys
):
    assert cli.main(["eng5", "finalize", str(waiting_batch)]) == 0
    assert f"CJ batch {waiting_batch} finalized: COMPLETE_STABLE" in capsys.readouterr().out
    assert batch_summary(cj_env, waiting_batch) == ("COMPLETE_STABLE", "COMPLETED", 4, 3, 0)


def test_finalize_twice_changes_nothing_the_second_time(cj_env, waiting_batch, capsys):
    assert cli.main(["eng5", "finalize", str(waiting_batch)]) == 0
    before = table_fingerprint(cj_env, SERVICE_TABLES)
    capsys.readouterr()
    assert cli.main(["eng5", "finalize", str(waiting_batch)]) == 0
    assert "already COMPLETED; nothing to do" in capsys.readouterr().out
    assert table_fingerprint(cj_env, SERVICE_TABLES) == before


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "999999"])
def test_finalize_of_no_such_batch_is_exit_4(cj_env, waiting_batch, capsys, raw):
    before = table_fingerprint(cj_env, SERVICE_TABLES)
    assert cli.main(["eng5", "finalize", raw]) == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert table_fingerprint(cj_env, SERVICE_TABLES) == before


def test_finalize_refuses_production(cj_env, waiting_batch, monkeypatch, capsys):
    monkeypatch.setenv("CJ_ENVIRONMENT", "production")
    before = table_fingerprint(cj_env, SERVICE_TABLES)
    assert cli.main(["eng5", "finalize", str(waiting_batch)]) == EXIT_REFUSED
    assert capsys.readouterr().err.startswith("cj-health: refusing to finalize a batch in")
    assert table_fingerprint(cj_env, SERVICE_TABLES) == before
