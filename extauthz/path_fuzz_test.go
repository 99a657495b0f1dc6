package extauthz

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParsePath checks parsePath on arbitrary paths. Properties: it never
// panics; on success the result is not empty, no segment is a dot segment
// ("." or ".."), and every segment is valid UTF-8 without NUL; on failure
// there is no result; and the result is a fixed point: escaping each
// segment with url.PathEscape and joining them under "/" parses back to the
// same segments, so a normalized path means what it says.
func FuzzParsePath(f *testing.F) {
	for _, p := range []string{
		"/", "", "/mcp", "//mcp", "/mcp/", "/mcp/../admin", "/mcp/%2e%2e/admin",
		"/mcp/%2E./admin", "/mcp/./x", "/mcp/%2e", "/../../etc", "/a%2Fb", "/a%2F..%2Fb",
		"/p%20q", "/mcp;x=1", "/a%zz", "/a%00b", "/a%ffb", "/a%", "/%c3%a9t%C3%A9",
		"/mcp?x=1", "/mcp#frag", "/a/b/c/../../..", "/a//b", "/a/%2f/b", "/+%2B",
		"mcp", "\\mcp\\..\\admin", "/.%2e/admin", "/%252e%252e/admin",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := parsePath(p)
		if err != nil {
			if got != nil {
				t.Fatalf("parsePath(%q) = %q with error %v", p, got, err)
			}
			return
		}
		if len(got) == 0 {
			t.Fatalf("parsePath(%q) is empty", p)
		}
		esc := make([]string, len(got))
		for i, seg := range got {
			if seg == "." || seg == ".." {
				t.Fatalf("parsePath(%q) = %q holds a dot segment", p, got)
			}
			if strings.IndexByte(seg, 0) >= 0 || !utf8.ValidString(seg) {
				t.Fatalf("parsePath(%q) = %q: segment %d holds NUL or invalid UTF-8", p, got, i)
			}
			esc[i] = url.PathEscape(seg)
		}
		again := "/" + strings.Join(esc, "/")
		got2, err := parsePath(again)
		if err != nil {
			t.Fatalf("parsePath(%q) = %q, but parsePath(%q) fails: %v", p, got, again, err)
		}
		if !slices.Equal(got, got2) {
			t.Fatalf("parsePath(%q) = %q, but parsePath(%q) = %q", p, got, again, got2)
		}
	})
}
