"""Observability of the gateway: Prometheus metrics, OpenTelemetry traces and JSON log lines (issue 14, items 1-4).

- ``metrics``: the one table of metrics (`METRICS`) and the exporter that renders them, at scrape time, from the
  counters GetServerStats reads (``integration_api.sessions.stats.ServerStats``) and the SDK client cache; the
  ``/metrics`` route of the HTTP app;
- ``worker_metrics``: with ``serve --workers N``, each worker publishes its counters to a shared directory once a
  second, so that a scrape answered by any worker covers them all;
- ``service``: what ``serve()`` runs for metrics besides the route (the publisher, the metrics port without HTTP);
- ``tracing``: the pipeline layers that make OpenTelemetry spans (GenAI semantic conventions), present only when
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; the SDK is imported only then;
- ``json_logs``: the JSON-lines log formatter (``log_format = "json"``).
"""
