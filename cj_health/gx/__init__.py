"""Great Expectations: the dbt project's data tests as scheduled data checks.

- `rules`: the rules as dbt compiles them (`dbt compile` of the data tests, read from
  manifest.json): the one definition dbt's tests and GX's expectations share.
- `context`: generates the file data context in great_expectations/ (suites, validation
  definitions, checkpoint) from those rules, deterministically (`make gx`).
- `connection`: the SQLAlchemy URL GX connects with (never written to a file).
- `run`: runs the checkpoint and summarises the results for `cj-health check`.
"""
