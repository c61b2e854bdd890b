{{ invariant_no_batch_alerting(batch_health=ref('cj_batch_health')) }}
