package extauthz

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		path string
		want []string
		err  bool
	}{
		{path: "/", want: []string{""}},
		{path: "", want: []string{""}},
		{path: "/mcp", want: []string{"mcp"}},
		{path: "//mcp", want: []string{"mcp"}},
		{path: "/mcp/", want: []string{"mcp", ""}},
		{path: "/mcp/../admin", want: []string{"admin"}},
		{path: "/mcp/%2e%2e/admin", want: []string{"admin"}},
		{path: "/mcp/%2E./admin", want: []string{"admin"}},
		{path: "/mcp/./x", want: []string{"mcp", "x"}},
		{path: "/mcp/%2e", want: []string{"mcp", ""}},
		{path: "/../../etc", want: []string{"etc"}},
		{path: "/.//admin", want: []string{"admin"}},
		{path: "/x/..//admin", want: []string{"admin"}},
		{path: "/x/%2e%2e//admin/", want: []string{"admin", ""}},
		{path: "..//", want: []string{""}},
		{path: "/a//b", want: []string{"a", "", "b"}},
		{path: "/a%2Fb", want: []string{"a/b"}},
		{path: "/p%20q", want: []string{"p q"}},
		{path: "/mcp;x=1", want: []string{"mcp;x=1"}},
		{path: "/a%zz", err: true},
		{path: "/a%00b", err: true},
		{path: "/a%ffb", err: true},
	} {
		got, err := parsePath(tc.path)
		if (err != nil) != tc.err {
			t.Errorf("parsePath(%q): err = %v", tc.path, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); !tc.err && diff != "" {
			t.Errorf("parsePath(%q) (-want +got):\n%s", tc.path, diff)
		}
	}
}
