"""Great Expectations: the invariants of the dbt project as scheduled data checks.

- `invariants`: renders the invariant macros (macros/invariants/) to plain SQL, the one
  definition dbt's tests and GX's expectations share.
- `context`: generates the file data context in great_expectations/ (suites, validation
  definitions, checkpoint) from those invariants, deterministically.
- `connection`: the SQLAlchemy URL GX connects with (never written to a file).
- `run`: runs the checkpoint and summarises the results for `cj-health check`.
"""
