"""The result callback: one signed POST to the backend per terminal outcome of an analysis.

- `outcome`: what a finished DAG run means (complete / partial / failed, the reason, whether
  a retry may help), from its task states, the failed step's recorded reason and result.json;
- `payload`: the JSON body and its id (the same outcome always gets the same id);
- `signing`: HMAC-SHA256 over timestamp and body with the shared secret;
- `delivery`: the POST, what counts as delivered, what is retried, the delivered marker.

The analysis DAG's last task (`report_outcome`, runs whatever happened upstream) builds the
payload and hands it to the `analysis_callback` DAG as one run named by the payload's id, so
the same outcome is never queued twice, a backend outage never holds an analysis run (or a
slot of its DAG's cap), and the delivery retries with backoff on its own.
"""
