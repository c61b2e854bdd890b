"""`cj-health bench`: a synthetic CJ database of N batches, and how the batch-health refresh,
the alert query and the finalizer perform on it (docs/performance.md).

generate: the set-wise SQL generator. measure: the timed figures. naive_peer: the per-batch
diagnostic way, for comparison. report: the table and the JSON. run: the whole run on a
database of its own.
"""
