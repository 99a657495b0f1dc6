package extauthz

import (
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"unicode/utf8"
)

// This file holds decodeJSON, the strict JSON decoder that reads request
// bodies. It produces the same values as encoding/json decoding into an
// any with UseNumber (map[string]any, []any, string, json.Number,
// bool, nil), but refuses every input on which two readers could disagree:
//
//   - invalid UTF-8 anywhere, and \u escapes that are unpaired UTF-16
//     surrogates (encoding/json silently turns both into U+FFFD, so a checker
//     and the upstream server could see different strings);
//   - duplicate keys in an object, at any level, compared after unescaping
//     ("a" and "\u0061" are the same key): a reader that keeps the first and
//     one that keeps the last would see different tool names;
//   - nesting deeper than the limit;
//   - anything but whitespace after the value;
//   - a leading UTF-8 byte order mark (RFC 8259 §8.1: do not send one; a
//     reader that skips it and one that does not disagree);
//   - malformed JSON.
//
// Errors wrap one of the sentinels below ([errors.Is] works) and carry a
// byte offset. They quote at most maxEchoBytes of the input.

// Sentinel errors of decodeJSON.
var (
	errSyntax       = errors.New("invalid JSON")
	errDuplicateKey = errors.New("duplicate object key")
	errTooDeep      = errors.New("JSON nesting too deep")
	errInvalidUTF8  = errors.New("invalid UTF-8 in JSON")
	errTrailingData = errors.New("trailing data after JSON value")
	errBOM          = errors.New("JSON must not start with a byte order mark")
)

const (
	// defaultJSONMaxDepth is the nesting limit used when decodeJSON is given
	// a limit below 1.
	defaultJSONMaxDepth = 64
	// maxJSONDepth caps any configured limit. It is encoding/json's own
	// limit, so that whatever decodeJSON accepts encoding/json accepts too;
	// it also bounds the recursion.
	maxJSONDepth = 10000
	// maxEchoBytes is the most client input an error message quotes.
	maxEchoBytes = 64
	// maxPooledScratch bounds the scratch stacks kept for reuse.
	maxPooledScratch = 1024
)

// jsonError is a decodeJSON failure: a sentinel, a detail, an offset.
type jsonError struct {
	kind   error  // one of the sentinels
	detail string // short, at most maxEchoBytes of input
	offset int    // byte offset in the input
}

func (e *jsonError) Error() string {
	s := e.kind.Error()
	if e.detail != "" {
		s += ": " + e.detail
	}
	return s + " at offset " + strconv.Itoa(e.offset)
}

func (e *jsonError) Unwrap() error { return e.kind }

// clipEcho returns s cut to at most maxEchoBytes bytes, on a rune boundary when
// s is valid UTF-8.
func clipEcho(s string) string {
	if len(s) <= maxEchoBytes {
		return s
	}
	n := maxEchoBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// decodeJSON decodes one JSON value strictly (see the top of this file).
// maxDepth is the most containers (objects and arrays) that may be open at
// once: 1 allows {"a":1} but not {"a":{}}. Below 1 it means
// defaultJSONMaxDepth; above maxJSONDepth it means maxJSONDepth.
//
// Strings in the result share one copy of data: the whole body stays in
// memory as long as any decoded string does.
func decodeJSON(data []byte, maxDepth int) (any, error) {
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		return nil, &jsonError{kind: errBOM}
	}
	switch {
	case maxDepth < 1:
		maxDepth = defaultJSONMaxDepth
	case maxDepth > maxJSONDepth:
		maxDepth = maxJSONDepth
	}
	d := decoderPool.Get().(*jsonDecoder)
	d.src = string(data)
	d.pos = 0
	d.depth = 0
	d.max = maxDepth
	v, err := d.value()
	if err == nil {
		d.skipSpace()
		if d.pos < len(d.src) {
			err = d.fail(errTrailingData, d.pos, "")
		}
	}
	if err != nil {
		v = nil
	}
	d.release()
	return v, err
}

// jsonDecoder is the state of one decodeJSON call. Decoders are pooled for
// their scratch stacks.
type jsonDecoder struct {
	src   string
	pos   int
	depth int
	max   int
	// elems and members are stacks shared by all open containers: a
	// container pushes its elements, then pops them into a value of the
	// exact size.
	elems   []any
	members []jsonMember
	buf     []byte // unescaping scratch
}

type jsonMember struct {
	key    string
	value  any
	offset int // of the key, for the duplicate-key error
}

var decoderPool = sync.Pool{New: func() any { return new(jsonDecoder) }}

func (d *jsonDecoder) release() {
	// Popped slots are cleared as containers close; after an error some
	// are still pushed.
	clear(d.elems)
	clear(d.members)
	d.elems = d.elems[:0]
	d.members = d.members[:0]
	d.src = ""
	if cap(d.elems) > maxPooledScratch || cap(d.members) > maxPooledScratch || cap(d.buf) > 16*maxPooledScratch {
		return
	}
	decoderPool.Put(d)
}

func (d *jsonDecoder) fail(kind error, offset int, detail string) error {
	return &jsonError{kind: kind, detail: detail, offset: offset}
}

// unexpected reports the byte at i (or the end of input) as unexpected.
func (d *jsonDecoder) unexpected(i int, expecting string) error {
	if i >= len(d.src) {
		return d.fail(errSyntax, i, "unexpected end of input, expecting "+expecting)
	}
	c := d.src[i]
	if c >= utf8.RuneSelf {
		if r, size := utf8.DecodeRuneInString(d.src[i:]); r == utf8.RuneError && size == 1 {
			return d.fail(errInvalidUTF8, i, "")
		}
		return d.fail(errSyntax, i, "unexpected non-ASCII character, expecting "+expecting)
	}
	return d.fail(errSyntax, i, "unexpected character "+strconv.QuoteRune(rune(c))+", expecting "+expecting)
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.src) {
		switch d.src[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// value decodes the value at d.pos, after optional whitespace.
func (d *jsonDecoder) value() (any, error) {
	d.skipSpace()
	if d.pos >= len(d.src) {
		return nil, d.unexpected(d.pos, "a value")
	}
	switch c := d.src[d.pos]; c {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		return jsonBoxString(s), nil
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return d.number()
		}
		return nil, d.unexpected(d.pos, "a value")
	}
}

func (d *jsonDecoder) literal(word string) error {
	end := d.pos + len(word)
	if end > len(d.src) || d.src[d.pos:end] != word {
		// Point at the first byte that differs.
		i := d.pos
		for i < len(d.src) && i < end && d.src[i] == word[i-d.pos] {
			i++
		}
		return d.unexpected(i, "a value")
	}
	d.pos = end
	return nil
}

// number reads a number with the grammar of RFC 8259 §6 and returns its
// literal text, as encoding/json does with UseNumber.
func (d *jsonDecoder) number() (any, error) {
	s := d.src
	start := d.pos
	i := start
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return nil, d.unexpected(i, "a digit")
	}
	digitsEnd := i
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return nil, d.unexpected(i, "a digit")
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return nil, d.unexpected(i, "a digit")
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	d.pos = i
	if n := i - start; n <= 3 && s[start] != '-' && i == digitsEnd {
		// A small non-negative integer: a preallocated value.
		v := 0
		for _, c := range []byte(s[start:i]) {
			v = v*10 + int(c-'0')
		}
		if v < len(jsonSmallNumbers) {
			return jsonSmallNumbers[v], nil
		}
	}
	return json.Number(s[start:i]), nil
}

// jsonSmallNumbers holds json.Number("0") to json.Number("127") as interface
// values, so that decoding them allocates nothing.
var jsonSmallNumbers = func() (t [128]any) {
	for i := range t {
		t[i] = json.Number(strconv.Itoa(i))
	}
	return t
}()

// jsonBoxString returns s as an interface value; common MCP strings come from
// constants and allocate nothing.
func jsonBoxString(s string) any {
	switch s {
	case "2.0":
		return "2.0"
	case "tools/call":
		return "tools/call"
	case "tools/list":
		return "tools/list"
	case "initialize":
		return "initialize"
	case "notifications/initialized":
		return "notifications/initialized"
	case "ping":
		return "ping"
	case "resources/read":
		return "resources/read"
	case "resources/list":
		return "resources/list"
	case "prompts/get":
		return "prompts/get"
	case "prompts/list":
		return "prompts/list"
	}
	return s
}

func (d *jsonDecoder) enter() error {
	d.depth++
	if d.depth > d.max {
		return d.fail(errTooDeep, d.pos, "more than "+strconv.Itoa(d.max)+" levels")
	}
	return nil
}

func (d *jsonDecoder) array() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '['
	base := len(d.elems)
	d.skipSpace()
	if d.pos < len(d.src) && d.src[d.pos] == ']' {
		d.pos++
		d.depth--
		return []any{}, nil
	}
	for {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.elems = append(d.elems, v)
		d.skipSpace()
		if d.pos < len(d.src) {
			switch d.src[d.pos] {
			case ',':
				d.pos++
				continue
			case ']':
				d.pos++
				a := make([]any, len(d.elems)-base)
				copy(a, d.elems[base:])
				clear(d.elems[base:])
				d.elems = d.elems[:base]
				d.depth--
				return a, nil
			}
		}
		return nil, d.unexpected(d.pos, "',' or ']'")
	}
}

func (d *jsonDecoder) object() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '{'
	base := len(d.members)
	d.skipSpace()
	if d.pos < len(d.src) && d.src[d.pos] == '}' {
		d.pos++
		d.depth--
		return map[string]any{}, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.src) || d.src[d.pos] != '"' {
			return nil, d.unexpected(d.pos, "a string key")
		}
		offset := d.pos
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.src) || d.src[d.pos] != ':' {
			return nil, d.unexpected(d.pos, "':'")
		}
		d.pos++
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.members = append(d.members, jsonMember{key: k, value: v, offset: offset})
		d.skipSpace()
		if d.pos < len(d.src) {
			switch d.src[d.pos] {
			case ',':
				d.pos++
				continue
			case '}':
				d.pos++
				members := d.members[base:]
				m := make(map[string]any, len(members))
				for _, mb := range members {
					if _, dup := m[mb.key]; dup {
						return nil, d.fail(errDuplicateKey, mb.offset, strconv.Quote(clipEcho(mb.key)))
					}
					m[mb.key] = mb.value
				}
				clear(members)
				d.members = d.members[:base]
				d.depth--
				return m, nil
			}
		}
		return nil, d.unexpected(d.pos, "',' or '}'")
	}
}

// jsonPlainByte reports the bytes a string may hold as they are: printable
// ASCII but '"' and '\\'.
var jsonPlainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads the string starting at d.pos (a '"'). A string without escapes
// is a substring of d.src and allocates nothing.
func (d *jsonDecoder) str() (string, error) {
	s := d.src
	start := d.pos + 1
	i := start
	for {
		for i < len(s) && jsonPlainByte[s[i]] {
			i++
		}
		if i >= len(s) {
			return "", d.unexpected(len(s), "'\"'")
		}
		switch c := s[i]; {
		case c == '"':
			d.pos = i + 1
			return s[start:i], nil
		case c == '\\':
			d.buf = append(d.buf[:0], s[start:i]...)
			return d.strEscaped(i)
		case c < 0x20:
			return "", d.fail(errSyntax, i, "control character in string")
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return "", d.fail(errInvalidUTF8, i, "")
			}
			i += size
		}
	}
}

// strEscaped continues str from the escape at i; d.buf holds what precedes.
func (d *jsonDecoder) strEscaped(i int) (string, error) {
	s := d.src
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return string(d.buf), nil
		case c == '\\':
			if i+1 >= len(s) {
				return "", d.unexpected(i+1, "an escape")
			}
			switch e := s[i+1]; e {
			case '"', '\\', '/':
				d.buf = append(d.buf, e)
			case 'b':
				d.buf = append(d.buf, '\b')
			case 'f':
				d.buf = append(d.buf, '\f')
			case 'n':
				d.buf = append(d.buf, '\n')
			case 'r':
				d.buf = append(d.buf, '\r')
			case 't':
				d.buf = append(d.buf, '\t')
			case 'u':
				r, ok := jsonHex4(s, i+2)
				if !ok {
					return "", d.fail(errSyntax, i, "invalid \\u escape")
				}
				switch {
				case r >= 0xD800 && r < 0xDC00:
					// A high surrogate: a low one must follow.
					var lo rune = -1
					if i+7 < len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
						lo, ok = jsonHex4(s, i+8)
						if !ok {
							return "", d.fail(errSyntax, i+6, "invalid \\u escape")
						}
					}
					if lo < 0xDC00 || lo >= 0xE000 {
						return "", d.fail(errInvalidUTF8, i, "unpaired surrogate escape")
					}
					r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
					i += 6
				case r >= 0xDC00 && r < 0xE000:
					return "", d.fail(errInvalidUTF8, i, "unpaired surrogate escape")
				}
				d.buf = utf8.AppendRune(d.buf, r)
				i += 4
			default:
				return "", d.fail(errSyntax, i, "invalid escape")
			}
			i += 2
		case c < 0x20:
			return "", d.fail(errSyntax, i, "control character in string")
		case c < utf8.RuneSelf:
			d.buf = append(d.buf, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return "", d.fail(errInvalidUTF8, i, "")
			}
			d.buf = append(d.buf, s[i:i+size]...)
			i += size
		}
	}
	return "", d.unexpected(len(s), "'\"'")
}

// jsonHex4 parses the four hex digits at s[i:i+4].
func jsonHex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
