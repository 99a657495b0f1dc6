// Package observability holds what an operator deploys to watch Portcullis
// — a Grafana dashboard (grafana-dashboard.json, on a Prometheus data
// source) and an OpenTelemetry Collector configuration (otel-collector.yaml)
// — and the tests that keep them true: every metric the dashboard queries
// is one Portcullis exports, and no credential or argument reaches a log
// line, a span or a metric.
package observability
