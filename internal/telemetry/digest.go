package telemetry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// ArgumentsDigest returns the hex SHA-256 that audit records carry instead
// of an MCP call's arguments: of their canonical JSON (object keys sorted,
// no insignificant space, numbers as written when decoded with UseNumber,
// no HTML escaping), or of the empty string when there are none or they do
// not encode. The gateway and the MCP server compute it the same way, so
// their records of one call carry the same digest.
//
// The canonical JSON is the bytes encoding/json's Encoder writes with
// SetEscapeHTML(false), without the newline. The values a JSON decoder
// produces ([]any, map[string]any, string, bool, float64, json.Number,
// nil) and the plain integer types are encoded directly into a pooled
// buffer, so the result string is the only allocation; anything else goes
// through encoding/json. It is safe for concurrent use.
func ArgumentsDigest(args any) string {
	if args == nil {
		return emptyDigest
	}
	s := digestPool.Get().(*digestState)
	b, ok := s.appendValue(s.buf[:0], args, 0)
	var sum [sha256.Size]byte
	if ok {
		sum = sha256.Sum256(b)
	}
	s.buf = b
	s.release()
	if !ok {
		return digestJSON(args)
	}
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// emptyDigest is the hex SHA-256 of no bytes: the digest of absent
// arguments.
const emptyDigest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// digestJSON is ArgumentsDigest through encoding/json: the definition the
// appender reproduces, and its fallback for the types it does not encode.
func digestJSON(args any) string {
	var buf bytes.Buffer
	if args != nil {
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if enc.Encode(args) != nil {
			buf.Reset()
		}
		buf.Truncate(max(buf.Len()-1, 0)) // Encode's newline
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:])
}

// digestState is the scratch of one ArgumentsDigest call: the canonical
// JSON, and a stack of the members of the objects too large for
// appendObject's stack array, each object's sorted in place above its
// parent's.
type digestState struct {
	buf     []byte
	members []member
}

type member struct {
	key   string
	value any
}

// digestPool holds digestStates between calls. The pool is the only state
// ArgumentsDigest keeps: a free function has no value to hang a pool on.
var digestPool = sync.Pool{New: func() any { return new(digestState) }}

// maxPooledDigest is the largest buffer put back in the pool: one huge
// argument list must not pin its buffer for ever.
const maxPooledDigest = 64 << 10

// maxDigestDepth is the nesting the appender encodes itself (arguments
// nest a few levels). Deeper values, a Go value with a cycle among them, go
// to encoding/json, which detects cycles.
const maxDigestDepth = 256

func (s *digestState) release() {
	clear(s.members) // drop the references to the arguments
	s.members = s.members[:0]
	if cap(s.buf) > maxPooledDigest {
		s.buf = nil
	}
	if cap(s.members) > maxPooledDigest/32 {
		s.members = nil
	}
	digestPool.Put(s)
}

// appendValue appends the canonical JSON of v to b. It reports false for a
// value it does not encode exactly as encoding/json would (a type it does
// not know, a number encoding/json refuses, too deep a nesting); b is then
// garbage.
func (s *digestState) appendValue(b []byte, v any, depth int) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return appendJSONString(b, v), true
	case json.Number:
		n := string(v)
		if n == "" {
			n = "0" // encoding/json writes the zero Number as 0
		}
		if !isValidNumber(n) {
			return b, false
		}
		return append(b, n...), true
	case bool:
		return strconv.AppendBool(b, v), true
	case float64:
		return appendJSONFloat(b, v, 64)
	case float32:
		return appendJSONFloat(b, float64(v), 32)
	case int:
		return strconv.AppendInt(b, int64(v), 10), true
	case int64:
		return strconv.AppendInt(b, v, 10), true
	case int32:
		return strconv.AppendInt(b, int64(v), 10), true
	case int16:
		return strconv.AppendInt(b, int64(v), 10), true
	case int8:
		return strconv.AppendInt(b, int64(v), 10), true
	case uint:
		return strconv.AppendUint(b, uint64(v), 10), true
	case uint64:
		return strconv.AppendUint(b, v, 10), true
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10), true
	case uint16:
		return strconv.AppendUint(b, uint64(v), 10), true
	case uint8:
		return strconv.AppendUint(b, uint64(v), 10), true
	case map[string]any:
		if v == nil {
			return append(b, "null"...), true
		}
		if depth >= maxDigestDepth {
			return b, false
		}
		return s.appendObject(b, v, depth)
	case []any:
		if v == nil {
			return append(b, "null"...), true
		}
		if depth >= maxDigestDepth {
			return b, false
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = s.appendValue(b, e, depth+1); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	default:
		return b, false
	}
}

// appendObject appends m with its keys in byte order, as encoding/json
// sorts them.
func (s *digestState) appendObject(b []byte, m map[string]any, depth int) ([]byte, bool) {
	// The members of a small object are sorted on the stack: no write
	// barriers, nothing for the pool to hold on to. A larger object's go
	// on the pooled stack, above those of the objects it is in.
	var local [16]member
	if len(m) <= len(local) {
		n := 0
		for k, v := range m {
			local[n] = member{k, v}
			n++
		}
		members := local[:n]
		// Insertion sort, as slices.SortFunc does for so few, without
		// its calls to the comparison.
		for i := 1; i < len(members); i++ {
			e := members[i]
			j := i
			for ; j > 0 && e.key < members[j-1].key; j-- {
				members[j] = members[j-1]
			}
			members[j] = e
		}
		return s.appendMembers(b, members, depth)
	}
	base := len(s.members)
	for k, v := range m {
		s.members = append(s.members, member{k, v})
	}
	// Nested objects push and pop their members above ours: the stack may
	// move, but ours stay where this slice has them.
	members := s.members[base:]
	slices.SortFunc(members, func(x, y member) int { return strings.Compare(x.key, y.key) })
	b, ok := s.appendMembers(b, members, depth)
	clear(s.members[base:])
	s.members = s.members[:base]
	return b, ok
}

// appendMembers appends the object of members, sorted by key.
func (s *digestState) appendMembers(b []byte, members []member, depth int) ([]byte, bool) {
	b = append(b, '{')
	for i, e := range members {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, e.key)
		b = append(b, ':')
		var ok bool
		if b, ok = s.appendValue(b, e.value, depth+1); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendJSONFloat appends f as encoding/json writes a float of bitSize bits
// (like %g, with the exponent cutoffs of ES6 number to string conversion
// and no exponent padding). It reports false for NaN and the infinities,
// which encoding/json refuses.
func appendJSONFloat(b []byte, f float64, bitSize int) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bitSize == 64 && (abs < 1e-6 || abs >= 1e21) || bitSize == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bitSize)
	if format == 'e' {
		// e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// isValidNumber reports whether s is a JSON number literal, as
// encoding/json checks a json.Number before writing it.
func isValidNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	default:
		return false
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}

// appendJSONString appends s quoted as encoding/json writes a string with
// HTML escaping off: \b and \f short, the other control characters as
// \u00XX, invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	return appendQuoted(b, s, true)
}

// appendSlogString appends s quoted as log/slog's JSONHandler writes a
// string: like encoding/json, except that \b and \f are written \u0008 and
// \u000c.
func appendSlogString(b []byte, s string) []byte {
	return appendQuoted(b, s, false)
}

const hexDigits = "0123456789abcdef"

func appendQuoted(b []byte, s string, shortBF bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Skip eight bytes at a time while none needs a look: most of an
		// audit record is plain ASCII.
		for i+8 <= len(s) {
			if t := specialBytes(load64(s, i)); t != 0 {
				i += bits.TrailingZeros64(t) / 8
				break
			}
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch {
			case c == '\\' || c == '"':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b' && shortBF:
				b = append(b, '\\', 'b')
			case c == '\f' && shortBF:
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// load64 returns the eight bytes of s from i, the first in the low byte.
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// specialBytes returns x with the high bit set in the lowest byte that is
// a control character, '"', '\\' or not ASCII, if any; it may set it in
// higher bytes too (a borrow carries over), never in lower ones.
func specialBytes(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	lt20 := x - 0x20*ones
	quote := (x ^ '"'*ones) - ones
	backslash := (x ^ '\\'*ones) - ones
	return (lt20 | quote | backslash | x) & highs
}
