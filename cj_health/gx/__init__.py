"""Great Expectations: the dbt project's data tests as scheduled data checks.

- `rules`: the rules as dbt compiles them (`dbt compile` of the data tests, read from
  manifest.json): the one definition dbt's tests and GX's expectations share.
- `generate`: builds the file data context (data source, suites, validation definitions,
  checkpoint) from those rules through GX's API, deterministically (`make gx`).
- `context`: the checked-in files in great_expectations/ and the copy `check` runs.
- `connection`: the SQLAlchemy URL GX connects with (never written to a file).
- `run`: runs the checkpoint and summarises the results for `cj-health check`.
"""
