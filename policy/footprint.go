package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A compiled policy is a function of its input and its data: same input,
// same data, same decision, as long as it calls no non-deterministic
// built-in (time.now_ns, http.send, rand.intn, ...). The data is fixed for
// a compiled policy, and most policies read a small part of the input: the
// caller's roles, the MCP method and tool, the arguments. So a decision can
// be cached under a digest of exactly the parts of the input the policy can
// read — its footprint — and a cached decision is the decision the policy
// would make again.
//
// The footprint is found statically, from every reference to input in the
// compiled modules: input.mcp.arguments[k] can only read under
// input.mcp.arguments, so that subtree goes into the key whole. A policy
// that reads input through a computed key at the top (input[k]), passes
// input itself anywhere (walk(input), object.get(input, ...), x := input),
// or calls a non-deterministic built-in has no footprint: it is never
// cached.

// footprint is the sorted list of input paths a policy can read; no path
// is a prefix of another.
type footprint struct {
	paths [][]string
}

// policyFootprint returns the footprint of the compiled modules, or nil and
// the reason the policy cannot be cached.
func policyFootprint(c *ast.Compiler) (*footprint, string) {
	var paths [][]string
	why := ""
	for _, m := range c.Modules {
		ast.NewGenericVisitor(func(x any) bool {
			if why != "" {
				return true
			}
			switch v := x.(type) {
			case ast.Ref:
				if !v[0].Equal(ast.InputRootDocument) {
					return false
				}
				var p []string
				for _, t := range v[1:] {
					s, ok := t.Value.(ast.String)
					if !ok {
						break
					}
					p = append(p, string(s))
				}
				if len(p) == 0 {
					why = "reads input as a whole at " + v.String()
					return true
				}
				paths = append(paths, p)
			case *ast.Expr:
				if v.IsCall() {
					why = nondeterministic(v.Operator())
				}
			case ast.Call:
				if len(v) > 0 {
					if r, ok := v[0].Value.(ast.Ref); ok {
						why = nondeterministic(r)
					}
				}
			}
			return false
		}).Walk(m)
		if why != "" {
			return nil, why
		}
	}
	slices.SortFunc(paths, func(a, b []string) int { return slices.Compare(a, b) })
	var minimal [][]string
	for _, p := range paths {
		if n := len(minimal); n > 0 && hasPrefix(p, minimal[n-1]) {
			continue // covered by a shorter path (sorted: it comes first)
		}
		minimal = append(minimal, p)
	}
	return &footprint{paths: minimal}, ""
}

func nondeterministic(op ast.Ref) string {
	if b, ok := ast.BuiltinMap[op.String()]; ok && b.Nondeterministic {
		return "calls the non-deterministic built-in " + b.Name
	}
	return ""
}

func hasPrefix(p, prefix []string) bool {
	return len(p) >= len(prefix) && slices.Equal(p[:len(prefix)], prefix)
}

func (fp *footprint) String() string {
	s := make([]string, len(fp.paths))
	for i, p := range fp.paths {
		s[i] = "input." + strings.Join(p, ".")
	}
	return strings.Join(s, " ")
}

var keyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// inputPaths is what a footprint reads from: the value at a path as a Go
// value where the input holds one (goAt; handled false elsewhere), else as
// an AST value (at). *Input is one.
type inputPaths interface {
	appendFieldKey(b []byte, path []string) ([]byte, bool)
	goAt(path []string) (v any, ok, handled bool)
	at(path []string) ast.Value
}

// key is the SHA-256 of a canonical, injective encoding of the footprint's
// values in the input: two inputs get the same key only if the policy
// cannot tell them apart. Go values are encoded as their AST conversion
// would be, without converting them.
func (fp *footprint) key(in inputPaths) [sha256.Size]byte {
	bp := keyBuffers.Get().(*[]byte)
	b := (*bp)[:0]
	for _, p := range fp.paths {
		if nb, handled := in.appendFieldKey(b, p); handled {
			b = nb
			continue
		}
		if v, ok, handled := in.goAt(p); handled {
			if !ok {
				b = append(b, 'x')
			} else {
				b = appendCanonicalGo(b, v)
			}
			continue
		}
		b = appendCanonical(b, in.at(p))
	}
	sum := sha256.Sum256(b)
	*bp = b
	keyBuffers.Put(bp)
	return sum
}

// appendCanonical appends an encoding of v in which every value has one
// form: a type tag, lengths before contents, object keys and set elements
// sorted. nil (absent) has its own tag.
func appendCanonical(b []byte, v ast.Value) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, 'x')
	case ast.Null:
		return append(b, 'n')
	case ast.Boolean:
		if v {
			return append(b, 't')
		}
		return append(b, 'f')
	case ast.Number:
		b = append(b, 'd')
		return appendString(b, string(v))
	case ast.String:
		b = append(b, 's')
		return appendString(b, string(v))
	case *ast.Array:
		b = append(b, 'a')
		b = binary.AppendUvarint(b, uint64(v.Len()))
		for i := range v.Len() {
			b = appendCanonical(b, v.Elem(i).Value)
		}
		return b
	case ast.Object:
		b = append(b, 'o')
		b = binary.AppendUvarint(b, uint64(v.Len()))
		keys := v.Keys()
		if !slices.IsSortedFunc(keys, compareTerms) {
			keys = slices.SortedFunc(slices.Values(keys), compareTerms)
		}
		for _, k := range keys {
			b = appendCanonical(b, k.Value)
			b = appendCanonical(b, v.Get(k).Value)
		}
		return b
	case ast.Set:
		b = append(b, 'e')
		b = binary.AppendUvarint(b, uint64(v.Len()))
		sorted := v.Sorted()
		for i := range sorted.Len() {
			b = appendCanonical(b, sorted.Elem(i).Value)
		}
		return b
	default:
		// Input values are data: anything else (a ref, a var) is written
		// by its string form under its own tag.
		b = append(b, '?')
		return appendString(b, v.String())
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func compareTerms(a, b *ast.Term) int { return ast.Compare(a.Value, b.Value) }

// appendCanonicalGo appends what appendCanonical(term(v).Value) would,
// for the JSON-like Go values the input holds, without building the AST.
func appendCanonicalGo(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, 'n')
	case string:
		b = append(b, 's')
		return appendString(b, v)
	case bool:
		if v {
			return append(b, 't')
		}
		return append(b, 'f')
	case json.Number:
		b = append(b, 'd')
		return appendString(b, string(v))
	case float64:
		b = append(b, 'd')
		return appendString(b, strconv.FormatFloat(v, 'g', -1, 64))
	case int:
		b = append(b, 'd')
		return appendString(b, strconv.Itoa(v))
	case int64:
		b = append(b, 'd')
		return appendString(b, strconv.FormatInt(v, 10))
	case []any:
		b = append(b, 'a')
		b = binary.AppendUvarint(b, uint64(len(v)))
		for _, e := range v {
			b = appendCanonicalGo(b, e)
		}
		return b
	case []string:
		b = append(b, 'a')
		b = binary.AppendUvarint(b, uint64(len(v)))
		for _, e := range v {
			b = append(b, 's')
			b = appendString(b, e)
		}
		return b
	case map[string]any:
		return appendCanonicalMap(b, v)
	case map[string]string:
		return appendCanonicalMap(b, v)
	case map[string][]string:
		return appendCanonicalMap(b, v)
	}
	return appendCanonical(b, term(v).Value)
}

func appendCanonicalMap[V any](b []byte, m map[string]V) []byte {
	b = append(b, 'o')
	b = binary.AppendUvarint(b, uint64(len(m)))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b = append(b, 's')
		b = appendString(b, k)
		b = appendCanonicalGo(b, m[k])
	}
	return b
}
