"""Alerting: failures to Discord, grouped per storm; the Gemini quota circuit breaker.

``redaction`` (secrets out of alerts and logs), ``discord`` (the webhook connection and
HTTP), ``message`` (what an alert says), ``grouping`` (one message per burst, shared
through the metadata database), ``breaker`` (quota storms), ``notifier`` (the callback).
"""
