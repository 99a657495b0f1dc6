package observability_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestNoSecretsInTelemetry runs whole Checks and tool calls with a known
// JWT, API key, opaque token, client secret and argument value (and the
// identity tokens ext_authz signs), then searches every log line (main, at
// debug, and audit), every span (name, attributes, events, status, links'
// attributes, resource) and the whole /metrics text for them.
func TestNoSecretsInTelemetry(t *testing.T) {
	sc := newScenario(t)
	sc.run(t)
	sc.mu.Lock()
	secrets := append([]string(nil), sc.secrets...)
	sc.mu.Unlock()
	if len(secrets) < 7 {
		t.Fatalf("only %d secrets: no identity token was signed", len(secrets))
	}
	places := map[string]string{
		"log":      sc.logs.String(),
		"audit":    sc.audit.String(),
		"/metrics": sc.scrape(t),
	}
	spans := sc.spans.Ended()
	if len(spans) == 0 {
		t.Fatal("no spans")
	}
	var sb strings.Builder
	for _, s := range spans {
		sb.WriteString(s.Name() + "\n" + s.Status().Description + "\n")
		for _, kv := range s.Attributes() {
			sb.WriteString(string(kv.Key) + "=" + kv.Value.String() + "\n")
		}
		for _, e := range s.Events() {
			sb.WriteString(e.Name + "\n")
			for _, kv := range e.Attributes {
				sb.WriteString(string(kv.Key) + "=" + kv.Value.String() + "\n")
			}
		}
		for _, l := range s.Links() {
			for _, kv := range l.Attributes {
				sb.WriteString(string(kv.Key) + "=" + kv.Value.String() + "\n")
			}
		}
		for _, kv := range s.Resource().Attributes() {
			sb.WriteString(string(kv.Key) + "=" + kv.Value.String() + "\n")
		}
	}
	places["spans"] = sb.String()
	for where, text := range places {
		if text == "" {
			t.Errorf("nothing in %s", where)
		}
		for _, s := range secrets {
			if i := strings.Index(text, s); i >= 0 {
				t.Errorf("%s holds a secret (%.12s…) near %q", where, s, text[max(i-80, 0):i])
			}
		}
	}
}

// TestAuditJoinsDecisionAndToolCall: the gateway's record of an allowed
// call and the MCP server's record of the tool call share the decision
// id, the trace id of the user's request and the arguments' digest.
func TestAuditJoinsDecisionAndToolCall(t *testing.T) {
	sc := newScenario(t)
	sc.run(t)
	type record map[string]any
	var decisions, calls []record
	for l := range strings.Lines(sc.audit.String()) {
		var r record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		if r["log"] != "audit" {
			t.Errorf("record not marked log=audit: %v", r)
		}
		switch r["msg"] {
		case "decision":
			decisions = append(decisions, r)
		case "tool call":
			calls = append(calls, r)
		default:
			t.Errorf("unexpected audit record %v", r)
		}
	}
	if len(decisions) != 5 || len(calls) != 3 {
		t.Fatalf("%d decision records and %d tool call records, want 5 and 3:\n%s", len(decisions), len(calls), sc.audit.String())
	}
	byID := map[string]record{}
	for _, d := range decisions {
		byID[d["decision_id"].(string)] = d
		if d["source_address"] != "192.0.2.10" || d["trace_id"] != traceID {
			t.Errorf("decision record %v", d)
		}
	}
	sc.mu.Lock()
	allowed := sc.decisions
	sc.mu.Unlock()
	for i, c := range calls {
		d, ok := byID[c["decision_id"].(string)]
		switch {
		case !ok:
			t.Errorf("tool call %v has no decision record", c)
			continue
		case d["outcome"] != "allowed" || c["outcome"] != "ok":
			t.Errorf("decision %v, tool call %v", d, c)
		}
		if c["decision_id"] != allowed[i] {
			t.Errorf("tool call %d: decision_id %v, Envoy's metadata says %s", i, c["decision_id"], allowed[i])
		}
		for _, k := range []string{"trace_id", "args_sha256", "subject", "client_id", "provider", "mcp_method", "mcp_name"} {
			if c[k] != d[k] {
				t.Errorf("%s: tool call %v, decision %v", k, c[k], d[k])
			}
		}
	}
}
