package envoy

import (
	"net/url"
	"strings"
)

// hasEscapedSlash reports whether path holds %2F or %5C (an escaped "/"
// or "\"), in either case.
func hasEscapedSlash(path string) bool {
	for i := 0; i+2 < len(path); i++ {
		if path[i] != '%' {
			continue
		}
		switch strings.ToUpper(path[i+1 : i+3]) {
		case "2F", "5C":
			return true
		}
	}
	return false
}

// normalizePath canonicalizes path as Envoy's normalize_path does (RFC
// 3986 section 6.2.2, with the Chromium URL library's path rules):
// percent-encoded unreserved characters are decoded, other escapes
// upper-cased, "\" becomes "/", bytes a path may not hold as they are
// ('"', '<', '{', controls, non-ASCII, ...) are percent-encoded, and "."
// and ".." segments are removed (section 5.2.4). A malformed escape makes
// it fail (Envoy answers 400).
func normalizePath(path string) (string, bool) {
	var b strings.Builder
	b.Grow(len(path))
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '%':
			if i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2]) {
				return "", false
			}
			d := unhex(path[i+1])<<4 | unhex(path[i+2])
			if isUnreserved(d) {
				b.WriteByte(d)
			} else {
				b.WriteByte('%')
				b.WriteString(strings.ToUpper(path[i+1 : i+3]))
			}
			i += 2
		case c == '\\':
			b.WriteByte('/')
		case !isPathChar(c):
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	return removeDotSegments(b.String()), true
}

// removeDotSegments is RFC 3986 section 5.2.4 for an absolute path.
func removeDotSegments(p string) string {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

// mergeSlashes collapses runs of "/" into one (merge_slashes).
func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// pathUnescape decodes the escapes of a normalized path for url.URL.Path;
// the path itself stays as RawPath so that the upstream sees it unchanged.
func pathUnescape(p string) string {
	u, err := url.PathUnescape(p)
	if err != nil {
		return p
	}
	return u
}

// isPathChar reports whether c may stand as it is in a path: an
// unreserved character, a sub-delimiter, ':', '@' or '/' (RFC 3986
// section 3.3).
func isPathChar(c byte) bool {
	return isUnreserved(c) || c == '/' || c == ':' || c == '@' || strings.IndexByte("!$&'()*+,;=", c) >= 0
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
