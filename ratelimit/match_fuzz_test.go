package ratelimit

import (
	"testing"
)

// fuzzMatchConfig has nested descriptors, exact values, wildcards (leading,
// trailing, inner, several, bare), nodes without a value, unlimited
// limits, limits lists and replaces, in two domains.
var fuzzMatchConfig = map[string][]byte{
	"mcp.yaml": []byte(`
domain: mcp
descriptors:
  - key: subject
    rate_limit: { unit: minute, requests_per_unit: 60, name: per_subject }
    descriptors:
      - key: tool
        value: search
        limits:
          - { unit: second, requests_per_unit: 5 }
          - { window: 5m, requests_per_unit: 100, algorithm: gcra, burst: 10 }
      - key: tool
        value: "admin_*"
        rate_limit: { unit: hour, requests_per_unit: 1, replaces: [{name: per_subject}] }
      - key: tool
        value: "*_read"
        rate_limit: { unlimited: true, name: reads }
      - key: tool
        rate_limit: { unit: day, requests_per_unit: 1000, algorithm: sliding_window }
  - key: subject
    value: alice
    rate_limit: { unlimited: true }
    descriptors:
      - key: tool
        rate_limit: { unit: second, requests_per_unit: 0 }
  - key: subject
    value: "bot-*-*x"
    rate_limit: { unit: week, requests_per_unit: 7 }
  - key: client
    value: "*"
    descriptors:
      - key: method
        value: "tools/*"
        descriptors:
          - key: tool
            value: "*a*b*"
            rate_limit: { unit: year, requests_per_unit: 4294967295 }
  - key: ip
    value: "*"
    rate_limit: { unit: second, requests_per_unit: 1 }
`),
	"other.yaml": []byte(`
domain: other
descriptors:
  - key: remote_address
    rate_limit: { unit: minute, requests_per_unit: 10 }
    shadow_mode: true
    detailed_metric: true
  - key: remote_address
    value: "10.*"
    rate_limit: { unlimited: true }
`),
}

// FuzzMatch matches arbitrary descriptors of one or two entries against a
// fixed configuration. Properties: Match never panics; what it returns is
// nil or the very limits slice of one configured node (so every limit is
// one of the configuration's, not nil, and has a positive window or is
// unlimited), never longer than the most limits a node has.
func FuzzMatch(f *testing.F) {
	c, err := ParseConfig(fuzzMatchConfig)
	if err != nil {
		f.Fatal(err)
	}
	nodeLimits := map[*Limit]bool{}
	var nodeSlices [][]*Limit
	maxPerNode := 0
	var walk func(lv level)
	walk = func(lv level) {
		for _, kn := range lv {
			nodes := append([]*node{}, kn.wildcard...)
			for _, n := range kn.exact {
				nodes = append(nodes, n)
			}
			if kn.def != nil {
				nodes = append(nodes, kn.def)
			}
			for _, n := range nodes {
				if len(n.limits) > 0 {
					nodeSlices = append(nodeSlices, n.limits)
				}
				maxPerNode = max(maxPerNode, len(n.limits))
				for _, l := range n.limits {
					nodeLimits[l] = true
				}
				walk(n.children)
			}
		}
	}
	for _, lv := range c.domains {
		walk(lv)
	}
	if len(nodeLimits) < 10 || maxPerNode != 2 {
		f.Fatalf("the configuration has %d limits, at most %d on a node", len(nodeLimits), maxPerNode)
	}

	for _, s := range [][5]string{
		{"mcp", "subject", "bob", "", ""},
		{"mcp", "subject", "bob", "tool", "search"},
		{"mcp", "subject", "bob", "tool", "admin_users"},
		{"mcp", "subject", "bob", "tool", "files_read"},
		{"mcp", "subject", "bob", "tool", "_read"},
		{"mcp", "subject", "bob", "tool", "other"},
		{"mcp", "subject", "alice", "tool", "search"},
		{"mcp", "subject", "bot-1-2x", "", ""},
		{"mcp", "subject", "bot--x", "tool", "x"},
		{"mcp", "client", "c", "method", "tools/call"},
		{"mcp", "", "", "", ""},
		{"mcp", "Subject", "bob", "", ""},
		{"other", "remote_address", "10.0.0.1", "", ""},
		{"other", "remote_address", "192.0.2.1", "x", "y"},
		{"nope", "subject", "bob", "", ""},
		{"", "subject", "*", "tool", "*"},
		{"mcp", "subject", "\x00\xff", "tool", "admin_\u00e9"},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	f.Fuzz(func(t *testing.T, domain, k1, v1, k2, v2 string) {
		for _, entries := range [][]Entry{
			{{k1, v1}},
			{{k1, v1}, {k2, v2}},
		} {
			got := c.Match(domain, entries)
			if got == nil {
				continue
			}
			if len(got) > maxPerNode {
				t.Fatalf("%d limits, a node has at most %d", len(got), maxPerNode)
			}
			found := false
			for _, s := range nodeSlices {
				if len(s) == len(got) && &s[0] == &got[0] {
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("Match(%q, %q) returned limits that are no node's", domain, entries)
			}
			for _, l := range got {
				if l == nil || !nodeLimits[l] {
					t.Fatalf("Match(%q, %q) returned a limit that is not configured: %+v", domain, entries, l)
				}
				if l.Window <= 0 && !l.Unlimited {
					t.Fatalf("limit %+v has no window and is not unlimited", l)
				}
			}
		}
	})
}
