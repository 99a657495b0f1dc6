package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustJSON(t *testing.T, s string) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDecisionFromValue(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    Decision
		wantErr string
	}{
		{name: "true", value: `true`, want: Decision{Allowed: true, Cost: 1}},
		{name: "false", value: `false`, want: Decision{Cost: 1}},
		{name: "minimal object", value: `{"allowed": true}`, want: Decision{Allowed: true, Cost: 1}},
		{
			name: "every key",
			value: `{
				"allowed": false,
				"reason": "tool not permitted",
				"http_status": 401,
				"headers": {"X-B": "2", "x-a": ["1", "1b"], "x-c": {"value": "3", "append": true}},
				"request_headers_to_remove": ["authorization"],
				"response_headers_to_add": [{"x-r": "r1"}, {"x-r": "r2"}],
				"query_parameters_to_set": {"a": "1", "b": ["2", "3"]},
				"query_parameters_to_remove": ["token"],
				"body": "{\"nope\":true}",
				"dynamic_metadata": {"tenant": "acme", "n": 2},
				"scopes": ["mcp:tools", "mcp:admin"],
				"cost": 5,
				"unknown_key_is_ignored": 1
			}`,
			want: Decision{
				Allowed:    false,
				Reason:     "tool not permitted",
				HTTPStatus: 401,
				Headers: []Header{
					{Key: "x-b", Value: "2"},
					{Key: "x-a", Value: "1"},
					{Key: "x-a", Value: "1b", Append: true},
					{Key: "x-c", Value: "3", Append: true},
				},
				RequestHeadersToRemove:  []string{"authorization"},
				ResponseHeadersToAdd:    []Header{{Key: "x-r", Value: "r1"}, {Key: "x-r", Value: "r2", Append: true}},
				QueryParametersToSet:    []QueryParameter{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}, {Key: "b", Value: "3"}},
				QueryParametersToRemove: []string{"token"},
				Body:                    `{"nope":true}`,
				DynamicMetadata:         map[string]any{"tenant": "acme", "n": json.Number("2")},
				Scopes:                  []string{"mcp:tools", "mcp:admin"},
				Cost:                    5,
			},
		},
		{name: "scopes as a string", value: `{"allowed": false, "scopes": "a  b"}`, want: Decision{Scopes: []string{"a", "b"}, Cost: 1}},
		{name: "cost zero", value: `{"allowed": true, "cost": 0}`, want: Decision{Allowed: true}},
		{name: "number", value: `1`, wantErr: "decision is a number, want a boolean or an object"},
		{name: "string", value: `"allow"`, wantErr: "decision is a string"},
		{name: "null", value: `null`, wantErr: "decision is null"},
		{name: "no allowed", value: `{"reason": "x"}`, wantErr: `no "allowed" key`},
		{name: "allowed not bool", value: `{"allowed": "true"}`, wantErr: `"allowed" is a string, want a boolean`},
		{name: "bad status", value: `{"allowed": false, "http_status": 42}`, wantErr: `"http_status": 42 is not an HTTP status`},
		{name: "fractional status", value: `{"allowed": false, "http_status": 403.5}`, wantErr: `"http_status": "403.5" is not an integer`},
		{name: "negative cost", value: `{"allowed": true, "cost": -1}`, wantErr: `"cost": -1 is out of range`},
		{name: "huge cost", value: `{"allowed": true, "cost": 1e12}`, wantErr: `"cost"`},
		{name: "headers not object", value: `{"allowed": true, "headers": "x"}`, wantErr: `"headers": is a string, want an object`},
		{name: "header value number", value: `{"allowed": true, "headers": {"x": 1}}`, wantErr: `header "x": value is a number`},
		{name: "header name invalid", value: `{"allowed": true, "headers": {"bad name": "v"}}`, wantErr: `"bad name" is not a valid header name`},
		{name: "pseudo header", value: `{"allowed": true, "headers": {":path": "/admin"}}`, wantErr: `":path" is not a valid header name`},
		{name: "header CRLF", value: `{"allowed": true, "headers": {"x": "a\r\nset-cookie: y"}}`, wantErr: `contains CR, LF or NUL`},
		{name: "remove not array", value: `{"allowed": true, "request_headers_to_remove": "x"}`, wantErr: `want an array of strings`},
		{name: "query value object", value: `{"allowed": true, "query_parameters_to_set": {"a": {}}}`, wantErr: `parameter "a"`},
		{name: "metadata not object", value: `{"allowed": true, "dynamic_metadata": []}`, wantErr: `"dynamic_metadata": is an array`},
		{name: "reason not string", value: `{"allowed": false, "reason": 3}`, wantErr: `"reason": is a number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecisionFromValue(mustJSON(t, tc.value))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				if got.Allowed {
					t.Fatal("an invalid decision allowed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestQueryForPath(t *testing.T) {
	for in, want := range map[string]string{
		"mcp/authz/decision": "data.mcp.authz.decision",
		"envoy/authz/allow":  "data.envoy.authz.allow",
		"x":                  "data.x",
	} {
		if got := QueryForPath(in); got != want {
			t.Errorf("QueryForPath(%q) = %q, want %q", in, got, want)
		}
	}
}
