package observability_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// values returns the series of the family name in the Prometheus text as
// "k=v,k=v" (sorted, otel_scope_* left out) → value (a histogram's count).
func values(t *testing.T, text, name string) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range fams[name].GetMetric() {
		var parts []string
		for _, l := range m.GetLabel() {
			if !strings.HasPrefix(l.GetName(), "otel_scope_") {
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
		}
		slices.Sort(parts)
		var v float64
		switch fams[name].GetType() {
		case dto.MetricType_COUNTER:
			v = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v = m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			v = float64(m.GetHistogram().GetSampleCount())
		}
		out[strings.Join(parts, ",")] += v
	}
	return out
}

// TestScenarioMetrics: the allows, the deny and the over-limit of the
// scenario move the metrics as they should, as Prometheus reads them.
func TestScenarioMetrics(t *testing.T) {
	sc := newScenario(t)
	sc.run(t)
	text := sc.scrape(t)
	for name, want := range map[string]map[string]float64{
		"portcullis_extauthz_decisions_total": {
			"mcp_method=tools/call,provider=corp,reason=policy_allowed,result=allowed":      2,
			"mcp_method=tools/call,provider=opaque,reason=policy_allowed,result=allowed":    1,
			"mcp_method=tools/call,provider=keys,reason=policy_denied,result=denied":        1,
			"mcp_method=tools/call,provider=opaque,reason=invalid_credential,result=denied": 1,
		},
		"portcullis_extauthz_check_duration_seconds": {"result=allowed": 3, "result=denied": 2},
		"portcullis_identity_cache_lookups_total": {
			"cache=jwt,provider=corp,result=hit":              1,
			"cache=jwt,provider=corp,result=miss":             1,
			"cache=introspection,provider=opaque,result=miss": 2,
			// A cache's series exist from the start, at 0 until counted.
			"cache=introspection,provider=opaque,result=hit": 0,
		},
		"portcullis_identity_introspection_requests_total": {"provider=opaque,result=active": 1, "provider=opaque,result=inactive": 1},
		"portcullis_identity_jwks_refreshes_total":         {"provider=corp,result=success,trigger=scheduled": 1},
		"portcullis_ratelimit_requests_total":              {"code=OK,domain=mcp": 5, "code=OVER_LIMIT,domain=mcp": 1},
		"portcullis_ratelimit_over_limit_total":            {"domain=mcp,key=subject": 1},
		"portcullis_ratelimit_near_limit_total":            {"domain=mcp,key=subject": 1, "domain=mcp,key=tenant": 1},
		"portcullis_ratelimit_shadow_mode_total":           {"domain=mcp,key=tenant": 1},
		"portcullis_ratelimit_failure_mode_allowed_total":  {"domain=mcp": 2},
		"portcullis_ratelimit_circuit_state":               {"backend=redis,state=closed": 0, "backend=redis,state=open": 1, "backend=redis,state=half_open": 0},
		"portcullis_ratelimit_circuit_opens_total":         {"": 1},
		"portcullis_mcp_tool_calls_total":                  {"outcome=ok,tool=echo": 3},
		"portcullis_mcp_bridge_upstream_up":                {"upstream=gone": 0},
		"portcullis_policy_reloads_total":                  {"result=success": 1},
	} {
		if diff := cmp.Diff(want, values(t, text, name)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	// The dead Redis is refused, or not answered within the timeout,
	// depending on how fast the dial fails: an error of either reason,
	// then the breaker's fast failure.
	errs := values(t, text, "portcullis_ratelimit_store_errors_total")
	if errs["backend=redis,reason=circuit_open"] != 1 || errs["backend=redis,reason=error"]+errs["backend=redis,reason=timeout"] != 1 || len(errs) != 2 {
		t.Errorf("store errors %v", errs)
	}
}
