"""How a data test dbt compiled becomes a GX rule (cj_health.gx.rules), on small manifests
shaped like dbt's: the subject's relation is GX's `{batch}`, every other relation stays as dbt
rendered it, and GX's own syntax (braces, bind colons, subquery aliases) cannot change the SQL.
"""

from __future__ import annotations

import pytest

from cj_health.errors import CjHealthError
from cj_health.gx.rules import INVARIANT_TESTS_DIR, rules_from_manifest

pytestmark = pytest.mark.unit

MACRO_ID = "macro.cj_batch_health.invariant_counters_match_pairs"


def singular(name: str, compiled: str, refs: list[str], macro: str = MACRO_ID) -> dict:
    return {
        "resource_type": "test",
        "name": name,
        "original_file_path": f"{INVARIANT_TESTS_DIR}{name}.sql",
        "test_metadata": None,
        "compiled_code": compiled,
        "refs": [{"name": ref, "package": None, "version": None} for ref in refs],
        "depends_on": {"macros": [macro]},
        "database": "cj_rules",
    }


def manifest(*tests: dict, macros: dict | None = None) -> dict:
    nodes = {f"test.cj_batch_health.{test['name']}": test for test in tests}
    nodes["model.cj_batch_health.cj_batch_health"] = {
        "resource_type": "model", "name": "cj_batch_health",
        "relation_name": '"cj_rules"."cj_monitoring"."cj_batch_health"',
    }
    return {
        "nodes": nodes,
        "macros": macros or {
            MACRO_ID: {
                "name": "invariant_counters_match_pairs",
                "description": "Invariant 7.  Counters   agree with pairs.",
                "meta": {"invariant": 7},
            }
        },
    }


def column_test(test: str, column: str, kwargs: dict, compiled: str = "") -> dict:
    return {
        "resource_type": "test",
        "name": f"{test}_cj_batch_health_{column}",
        "original_file_path": "models/marts/_marts__models.yml",
        "test_metadata": {"name": test, "kwargs": {"column_name": column, **kwargs}},
        "column_name": column,
        "attached_node": "model.cj_batch_health.cj_batch_health",
        "compiled_code": compiled,
        "refs": [{"name": "cj_batch_health"}],
        "database": "cj_rules",
    }


COUNTERS = (
    'select cj_batch_id from "int_batch_facts"\n'
    '    where not counters_agree_with_pairs\n'
    '    and cj_batch_id not in (select cj_batch_id from "stg_acks")'
)


def test_an_invariant_runs_its_compiled_sql_on_its_subjects_batch() -> None:
    [rule] = rules_from_manifest(
        manifest(singular("assert_counters", COUNTERS, ["int_batch_facts", "stg_acks"]))
    )
    assert rule.rule == "counters_match_pairs" and rule.asset == "int_batch_facts"
    assert rule.expectation_type == "unexpected_rows_expectation"
    assert rule.description == "Invariant 7. Counters agree with pairs."
    assert rule.meta == {"dbt_test": "assert_counters", "macro": "invariant_counters_match_pairs",
                         "invariant": 7}
    query = rule.kwargs["unexpected_rows_query"]
    assert query.splitlines()[0] == "select cj_batch_id from {batch}"
    assert '"stg_acks"' in query and '"int_batch_facts"' not in query


def test_a_join_names_the_batch_subquery_postgresql_wants_an_alias() -> None:
    compiled = 'select f.cj_batch_id from "int_batch_facts" join "stg_acks" a using (cj_batch_id)'
    [rule] = rules_from_manifest(
        manifest(singular("assert_join", compiled, ["int_batch_facts", "stg_acks"]))
    )
    assert "from {batch} as int_batch_facts join" in rule.kwargs["unexpected_rows_query"]


def test_braces_and_bind_like_colons_survive_gxs_formatting() -> None:
    compiled = (
        "select cj_batch_id from \"int_batch_facts\" where "
        "payload::text like '{%' and tags = '{a}' and note = 'at :noon'"
    )
    [rule] = rules_from_manifest(manifest(singular("assert_x", compiled, ["int_batch_facts"])))
    query = rule.kwargs["unexpected_rows_query"]
    assert "'{{%'" in query and "'{{a}}'" in query
    assert "payload::text" in query, "a cast is not a bind parameter"
    assert "'at \\:noon'" in query, "SQLAlchemy's text() would read :noon as a parameter"
    assert query.format(batch="t").replace("\\:", ":").endswith("note = 'at :noon'")


def test_sql_reading_a_qualified_relation_is_refused() -> None:
    compiled = 'select cj_batch_id from "int_batch_facts" join "cj"."public"."x" using (id)'
    with pytest.raises(CjHealthError, match="not a model of the project"):
        rules_from_manifest(manifest(singular("assert_x", compiled, ["int_batch_facts"])))


def test_sql_not_reading_its_subject_is_refused() -> None:
    compiled = 'select cj_batch_id from "other"'
    with pytest.raises(CjHealthError, match="not its subject int_batch_facts"):
        rules_from_manifest(manifest(singular("assert_x", compiled, ["int_batch_facts"])))


def test_invariants_come_first_by_number_then_column_rules_by_name() -> None:
    macros = {
        f"macro.p.invariant_{name}": {"name": f"invariant_{name}", "description": "d",
                                      "meta": {"invariant": number}}
        for name, number in (("late", 9), ("early", 2))
    }
    rules = rules_from_manifest(manifest(
        column_test("not_null", "cj_batch_id", {}),
        singular("assert_late", COUNTERS, ["int_batch_facts"], "macro.p.invariant_late"),
        column_test("accepted_values", "health_status", {"values": ["HEALTHY", "STUCK"]}),
        singular("assert_early", COUNTERS, ["int_batch_facts"], "macro.p.invariant_early"),
        macros=macros,
    ))
    assert [rule.rule for rule in rules] == [
        "early", "late",
        "cj_batch_health.cj_batch_id.not_null",
        "cj_batch_health.health_status.accepted_values",
    ]
    in_set = rules[3]
    assert in_set.expectation_type == "expect_column_values_to_be_in_set"
    assert in_set.kwargs == {"column": "health_status", "value_set": ["HEALTHY", "STUCK"]}
    assert in_set.description == "health_status is one of the service's values: HEALTHY, STUCK."


def test_a_project_generic_test_runs_its_compiled_sql() -> None:
    compiled = 'select ssr from "cj_batch_health" where ssr < 0 or ssr > 1'
    rules = rules_from_manifest(manifest(
        singular("assert_counters", COUNTERS, ["int_batch_facts"]),
        column_test("in_range", "ssr", {"min_value": 0, "max_value": 1}, compiled),
    ))
    rule = rules[-1]
    assert rule.rule == "cj_batch_health.ssr.in_range"
    assert rule.kwargs == {
        "unexpected_rows_query": "select ssr from {batch} where ssr < 0 or ssr > 1"
    }
    assert rule.description == "ssr lies between 0 and 1 wherever it is set."


def test_without_an_invariant_there_is_nothing_to_check() -> None:
    with pytest.raises(CjHealthError, match="no singular test"):
        rules_from_manifest(manifest(column_test("not_null", "cj_batch_id", {})))


def test_two_tests_making_the_same_rule_are_refused() -> None:
    with pytest.raises(CjHealthError, match="same GX rule: counters_match_pairs"):
        rules_from_manifest(manifest(
            singular("assert_a", COUNTERS, ["int_batch_facts"]),
            singular("assert_b", COUNTERS, ["int_batch_facts"]),
        ))


def test_an_invariant_test_must_call_one_invariant_macro() -> None:
    with pytest.raises(CjHealthError, match="must call one invariant macro"):
        rules_from_manifest(manifest(
            singular("assert_a", COUNTERS, ["int_batch_facts"], "macro.p.something_else"),
            macros={"macro.p.something_else": {"name": "something_else"}},
        ))
