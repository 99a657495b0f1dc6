package ratelimit

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// matched is what a match test checks of a limit.
type matched struct {
	Key            string
	Name           string
	Requests       uint64
	Window         time.Duration
	Unlimited      bool
	ShadowMode     bool
	DetailedMetric bool
	Replaces       []string
}

func summarize(ls []*Limit) []matched {
	if ls == nil {
		return nil
	}
	out := make([]matched, len(ls))
	for i, l := range ls {
		out[i] = matched{l.Key, l.Name, l.Requests, l.Window, l.Unlimited, l.ShadowMode, l.DetailedMetric, l.Replaces}
	}
	return out
}

// desc builds a descriptor from "key=value" strings.
func desc(kvs ...string) []Entry {
	es := make([]Entry, len(kvs))
	for i, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		es[i] = Entry{Key: k, Value: v}
	}
	return es
}

func loadExamples(t testing.TB) *Config {
	t.Helper()
	c, err := LoadConfig([]string{"testdata/config/examples"})
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	return c
}

func lim(key string, requests uint64, window time.Duration) matched {
	return matched{Key: key, Requests: requests, Window: window}
}

func TestMatch(t *testing.T) {
	c := loadExamples(t)
	const s, m, h, d = time.Second, time.Minute, time.Hour, 24 * time.Hour
	one := func(l matched) []matched { return []matched{l} }
	named := func(l matched, name string) matched { l.Name = name; return l }
	shadow := func(l matched) matched { l.ShadowMode = true; return l }
	detailed := func(l matched) matched { l.DetailedMetric = true; return l }
	replaces := func(l matched, names ...string) matched { l.Replaces = names; return l }

	tests := []struct {
		name   string
		domain string
		desc   []Entry
		want   []matched
	}{
		// Example 1: values of one key.
		{"value sessions", "kv_store", desc("table=sessions"), one(lim("table_sessions", 300, s))},
		{"value audit", "kv_store", desc("table=audit"), one(lim("table_audit", 50, s))},
		{"value without default", "kv_store", desc("table=users"), nil},
		{"key is case-sensitive", "kv_store", desc("Table=sessions"), nil},
		{"value is case-sensitive", "kv_store", desc("table=Sessions"), nil},
		{"unknown domain", "kv_stores", desc("table=sessions"), nil},
		{"empty domain", "", desc("table=sessions"), nil},
		{"empty descriptor", "kv_store", nil, nil},

		// Example 2: a limit at depth 2 below a placeholder.
		{"nested limit", "notify", desc("channel=promo", "recipient=5550100"), one(lim("channel_promo.recipient", 3, d))},
		{"nested default other number", "notify", desc("channel=promo", "recipient=5550199"), one(lim("channel_promo.recipient", 3, d))},
		{"top-level default", "notify", desc("recipient=5550100"), one(lim("recipient", 40, d))},
		{"placeholder has no limit", "notify", desc("channel=promo"), nil},
		{"other channel", "notify", desc("channel=news", "recipient=5550100"), nil},
		{"order matters", "notify", desc("recipient=5550100", "channel=promo"), nil},

		// Example 3: the value before the default.
		{"default", "edge", desc("client_ip=192.0.2.1"), one(lim("client_ip", 20, s))},
		{"specific value", "edge", desc("client_ip=192.0.2.66"), one(lim("client_ip_192.0.2.66", 0, s))},
		{"empty value takes the default", "edge", desc("client_ip="), one(lim("client_ip", 20, s))},

		// Example 4: depth must match.
		{"leaf at depth 1", "depth_leaf", desc("team=core"), one(lim("team_core", 7, m))},
		{"longer descriptor than leaf", "depth_leaf", desc("team=core", "member=ann"), nil},
		{"nested at depth 2", "depth_nested", desc("team=core", "member=ann"), one(lim("team_core.member", 7, m))},
		{"shorter descriptor than limit", "depth_nested", desc("team=core"), nil},
		{"longer descriptor than limit", "depth_nested", desc("team=core", "member=ann", "device=x"), nil},

		// Example 5: unlimited.
		{"unlimited", "backends", desc("cache=redis"), one(matched{Key: "cache", Unlimited: true})},
		{"limited", "backends", desc("billing=invoices"), one(lim("billing", 250, h))},

		// Example 6: shadow mode per descriptor.
		{"shadow", "rollout", desc("app=web", "tenant=pilot"), one(shadow(lim("app.tenant_pilot", 5, s)))},
		{"not shadow", "rollout", desc("app=web", "tenant=steady"), one(lim("app.tenant_steady", 15, s))},
		{"unlisted tenant", "rollout", desc("app=web", "tenant=other"), nil},

		// Example 7: replaces.
		{"named", "overrides", desc("plan=basic", "user=carol"), one(named(lim("plan_basic.user_carol", 4, s), "carol_basic"))},
		{"replacing", "overrides", desc("region=eu", "user=carol"), one(replaces(lim("region_eu.user_carol", 12, s), "carol_basic"))},
		{"neither", "overrides", desc("plan=basic", "user=dave"), nil},

		// Example 8: detailed_metric on the default only.
		{"detailed default", "metrics", desc("route=/orders"), one(detailed(lim("route", 30, m)))},
		{"specific not detailed", "metrics", desc("route=health"), one(lim("route_health", 600, m))},

		// Example 9 and ours: wildcards.
		{"trailing wildcard", "tools", desc("tool=fs_read"), one(lim("tool_fs_*", 20, m))},
		{"first wildcard in file order wins", "tools", desc("tool=fs_write_file"), one(lim("tool_fs_*", 20, m))},
		{"star matches empty", "tools", desc("tool=fs_"), one(lim("tool_fs_*", 20, m))},
		{"exact beats wildcard", "tools", desc("tool=fs_admin"), one(lim("tool_fs_admin", 1, m))},
		{"stars on both sides", "tools", desc("tool=web_search_v2"), one(lim("tool_*_search_*", 8, m))},
		{"stars on both sides, empty runs", "tools", desc("tool=_search_"), one(lim("tool_*_search_*", 8, m))},
		{"leading star", "tools", desc("tool=run.exe"), one(lim("tool_*.exe", 0, m))},
		{"no wildcard matches: default", "tools", desc("tool=search"), one(lim("tool", 100, m))},
		{"wildcard is case-sensitive", "tools", desc("tool=FS_read"), one(lim("tool", 100, m))},
		{"nested under wildcard", "tools", desc("path=/v1/items/42", "method=GET"), one(lim("path_/v*/items/*.method_GET", 50, s))},
		{"nested under wildcard, other method", "tools", desc("path=/v1/items/42", "method=POST"), nil},
		{"wildcard does not match, no default", "tools", desc("path=/v1/users/42", "method=GET"), nil},

		// Ours: several limits, algorithms, windows; no backtracking.
		{"subject default", "mcp", desc("subject=bob"), one(named(lim("subject", 600, m), "per_subject"))},
		{"subject replaces", "mcp", desc("subject=alice"), one(replaces(lim("subject_alice", 6000, m), "per_subject"))},
		{"subject tool", "mcp", desc("subject=bob", "tool=list_files"), one(lim("subject.tool", 60, m))},
		{"several limits", "mcp", desc("subject=bob", "tool=search.web"), []matched{
			shadow(named(lim("subject.tool_search.*[0]", 10, s), "search_fast")),
			shadow(lim("subject.tool_search.*[1]", 1000, d)),
		}},
		{"no backtracking to the default", "mcp", desc("subject=alice", "tool=list_files"), nil},
		{"unlimited value", "mcp", desc("client_id=ops-console"), one(matched{Key: "client_id_ops-console", Unlimited: true})},
		{"upper-case unit", "mcp", desc("client_id=cli"), one(lim("client_id", 100, s))},
		{"window", "mcp", desc("weighted=x"), one(lim("weighted", 500, 5*m))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := summarize(c.Match(tc.domain, tc.desc))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Match(%q, %v) (-want +got):\n%s", tc.domain, tc.desc, diff)
			}
		})
	}
}

func TestMatchNilConfig(t *testing.T) {
	var c *Config
	if got := c.Match("mcp", desc("subject=bob")); got != nil {
		t.Errorf("nil Config: Match = %v, want nil", got)
	}
	if got := c.Domains(); got != nil {
		t.Errorf("nil Config: Domains = %v, want nil", got)
	}
}

func TestMatchWildcardPerLevel(t *testing.T) {
	// The reference consults only the top level's wildcards; we use each
	// level's own, which is what its format describes.
	c, err := ParseConfig(map[string][]byte{"w.yaml": []byte(`
domain: w
descriptors:
  - key: a
    descriptors:
      - key: b
        value: "x*"
        rate_limit: {unit: second, requests_per_unit: 1}
  - key: b
    value: "y*"
    rate_limit: {unit: second, requests_per_unit: 2}
`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc []Entry
		want []matched
	}{
		{desc("a=1", "b=x1"), []matched{lim("a.b_x*", 1, time.Second)}},
		{desc("a=1", "b=y1"), nil},
		{desc("b=y1"), []matched{lim("b_y*", 2, time.Second)}},
		{desc("b=x1"), nil},
	} {
		if diff := cmp.Diff(tc.want, summarize(c.Match("w", tc.desc))); diff != "" {
			t.Errorf("Match(%v) (-want +got):\n%s", tc.desc, diff)
		}
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"**", "", true},
		{"a*", "a", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"*a", "ba", true},
		{"*a", "ab", false},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"a*a", "aba", true},
		{"*x*", "x", true},
		{"*x*", "axb", true},
		{"*x*", "ab", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "acb", false},
		{"a*bb*bc", "abbc", false},
		{"a*bb*bc", "abbbc", true},
		{"a*bb*bc", "abcbbc", false},
		{"*ab*ab*", "abab", true},
		{"*ab*ab*", "aba", false},
		{"/v*/items/*", "/v1/items/42", true},
		{"/v*/items/*", "/v1/users/42", false},
	}
	for _, tc := range tests {
		g := compileGlob(tc.pattern)
		if got := g.match(tc.value); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.pattern, tc.value, got, tc.want)
		}
	}
}

// benchConfig is the mcp example with many exact subjects next to it.
func benchConfig(tb testing.TB) *Config {
	tb.Helper()
	var b strings.Builder
	b.WriteString("domain: bench\ndescriptors:\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "  - key: subject\n    value: user%d\n    rate_limit: {unit: minute, requests_per_unit: %d}\n", i, i+1)
	}
	b.WriteString(`  - key: subject
    rate_limit: {unit: minute, requests_per_unit: 600}
    descriptors:
      - key: tool
        value: "search.*"
        limits:
          - {unit: second, requests_per_unit: 10}
          - {unit: day, requests_per_unit: 1000}
      - key: tool
        value: "*_admin"
        rate_limit: {unit: second, requests_per_unit: 1}
      - key: tool
        rate_limit: {unit: minute, requests_per_unit: 60, algorithm: gcra}
`)
	c, err := ParseConfig(map[string][]byte{"bench.yaml": []byte(b.String())})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

var benchDescriptors = []struct {
	name string
	desc []Entry
}{
	{"exact", desc("subject=user500")},
	{"default", desc("subject=bob")},
	{"nested_default", desc("subject=bob", "tool=list_files")},
	{"nested_wildcard", desc("subject=bob", "tool=search.web")},
	{"no_match", desc("client=x")},
}

func BenchmarkMatch(b *testing.B) {
	c := benchConfig(b)
	for _, bd := range benchDescriptors {
		b.Run(bd.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Match("bench", bd.desc)
			}
		})
	}
}

func TestMatchAllocs(t *testing.T) {
	c := benchConfig(t)
	for _, bd := range benchDescriptors {
		if n := testing.AllocsPerRun(100, func() { c.Match("bench", bd.desc) }); n != 0 {
			t.Errorf("Match %s: %v allocations, want 0", bd.name, n)
		}
	}
}
