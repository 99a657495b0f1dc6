package extauthz

import (
	"context"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/portcullis-mcp/portcullis/internal/telemetry"
	"github.com/portcullis-mcp/portcullis/policy"
)

const meterName = "github.com/portcullis-mcp/portcullis/extauthz"

// Metric names.
const (
	metricDecisions     = "portcullis.extauthz.decisions"
	metricCheckDuration = "portcullis.extauthz.check.duration"
)

// Results of a Check: the result label of the metrics and the outcome of
// the audit record.
const (
	ResultAllowed = "allowed"
	ResultDenied  = "denied"
	ResultError   = "error" // the decision could not be made: 503
)

// Reasons of decisions the policy made, and of refusals made neither by
// the policy nor for the request's form; with the Reason constants of
// errors.go they are every value of the reason label.
const (
	ReasonPolicyAllowed  = "policy_allowed"
	ReasonPolicyDenied   = "policy_denied"
	ReasonDryRun         = "dry_run" // the policy denied or failed; dry_run allowed
	ReasonPolicyNotReady = "policy_not_ready"
	ReasonInternalError  = "internal_error"
	reasonOther          = "other"
)

// check is what one Check learned, for its span, metrics and audit record.
type check struct {
	start      time.Time
	decisionID string
	r          *request         // nil when the request could not be read
	decision   *policy.Decision // nil unless the policy decided
	provider   string           // the provider that recognized the credential
}

// outcome classifies the answer: a result and a reason code, both from
// closed sets (never the policy's free text).
func (c *check) outcome(resp *authv3.CheckResponse) (result, reason string) {
	if d := c.decision; d != nil {
		switch {
		case d.DryRun:
			return ResultAllowed, ReasonDryRun
		case d.Allowed:
			return ResultAllowed, ReasonPolicyAllowed
		default:
			return ResultDenied, ReasonPolicyDenied
		}
	}
	// A refusal carries its reason code as the status message.
	reason = reasonCode(resp.GetStatus().GetMessage())
	if resp.GetDeniedResponse().GetStatus().GetCode() == http.StatusServiceUnavailable {
		return ResultError, reason
	}
	return ResultDenied, reason
}

// reasonCode returns code when it is one of the refusal reasons, else
// "other", so the label stays bounded whatever a future refusal carries.
func reasonCode(code string) string {
	switch code {
	case ReasonParseError, ReasonInvalidRequest, ReasonBatch, ReasonHeaderMismatch, ReasonBodyTooLarge,
		ReasonHeadersTooLarge, ReasonNoHTTP, ReasonPolicyError, ReasonPolicyUndefined, ReasonNoCredential,
		ReasonInvalidCredential, ReasonAuthnUnavailable, ReasonLockedOut, ReasonPolicyNotReady, ReasonInternalError:
		return code
	}
	return reasonOther
}

// methodLabel is the MCP method of a request for the mcp_method label: the
// method when MCP defines it, "" when the request is not MCP, else
// "_OTHER" (a client picks the method: it must not pick label values).
func methodLabel(r *request) string {
	if r == nil || r.in.MCP == nil {
		return ""
	}
	switch m := r.in.MCP.Method; m {
	case "initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read",
		"resources/templates/list", "resources/subscribe", "resources/unsubscribe", "prompts/list",
		"prompts/get", "completion/complete", "logging/setLevel", "notifications/initialized",
		"notifications/cancelled", "notifications/progress", "notifications/roots/list_changed",
		"tasks/get", "tasks/result", "tasks/list", "tasks/cancel", "":
		return m
	}
	return "_OTHER"
}

// checkMetrics are the Check instruments. The decisions counter has one
// series per combination of labels, kept: counting one is an atomic add.
type checkMetrics struct {
	on        bool
	decisions *telemetry.LabeledCounter[decisionLabels]
	duration  metric.Float64Histogram
	byResult  map[string][]metric.RecordOption
}

type decisionLabels struct{ result, reason, provider, method string }

// maxLabelSets bounds the decisions counter's series; past it decisions
// are counted in the overflow series (otel.metric.overflow=true). The
// labels are bounded (results, reasons, configured providers, MCP
// methods), so it is a guard, not a limit expected to be reached.
const maxLabelSets = 4096

func newCheckMetrics(mp metric.MeterProvider) *checkMetrics {
	m := &checkMetrics{on: mp != nil, byResult: map[string][]metric.RecordOption{}}
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter(meterName)
	m.decisions = telemetry.NewLabeledCounter(telemetry.NewCounterVec(meter, metricDecisions, metric.WithUnit("{decision}"),
		metric.WithDescription("Check answers, by result (allowed, denied, error), reason code, identity provider and MCP method.")),
		maxLabelSets, func(l decisionLabels) attribute.Set {
			return attribute.NewSet(
				attribute.String("result", l.result),
				attribute.String("reason", l.reason),
				attribute.String("provider", l.provider),
				attribute.String("mcp_method", l.method),
			)
		})
	m.duration, _ = meter.Float64Histogram(metricCheckDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of Check, from the request to the answer, by result."),
		metric.WithExplicitBucketBoundaries(telemetry.DurationBuckets()...))
	for _, r := range []string{ResultAllowed, ResultDenied, ResultError} {
		m.byResult[r] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("result", r)))}
	}
	return m
}

func (m *checkMetrics) record(ctx context.Context, l decisionLabels, d time.Duration) {
	if !m.on {
		return
	}
	m.decisions.Series(l).Add(1)
	m.duration.Record(ctx, d.Seconds(), m.byResult[l.result]...)
}
