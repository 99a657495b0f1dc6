package policy

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputFields are the keys of the input document, in the order value
// builds them.
var inputFields = [...]string{"attributes", "parsed_path", "parsed_query", "parsed_body", "truncated_body", "version", "identity", "mcp"}

// value converts the input to an AST value directly, without the JSON round
// trip OPA would make for a Go struct.
func (in *Input) value() ast.Value {
	terms := make([][2]*ast.Term, 0, len(inputFields))
	for _, k := range inputFields {
		if t := in.field(k); t != nil {
			terms = append(terms, [2]*ast.Term{ast.InternedTerm(k), t})
		}
	}
	return ast.NewObject(terms...)
}

// field is the term of one top-level key of the input, nil when absent.
func (in *Input) field(k string) *ast.Term {
	switch k {
	case "attributes":
		if in.Attributes == nil && in.AttributesFunc != nil {
			in.Attributes = in.AttributesFunc()
		}
		return term(in.Attributes)
	case "parsed_path":
		return stringsTerm(in.ParsedPath)
	case "parsed_query":
		q := make([][2]*ast.Term, 0, len(in.ParsedQuery))
		for k, vs := range in.ParsedQuery {
			q = append(q, [2]*ast.Term{ast.StringTerm(k), stringsTerm(vs)})
		}
		return ast.ObjectTerm(q...)
	case "parsed_body":
		if in.ParsedBody == nil {
			return nil
		}
		return term(in.ParsedBody)
	case "truncated_body":
		return ast.InternedTerm(in.TruncatedBody)
	case "version":
		return ast.ObjectTerm(
			[2]*ast.Term{ast.InternedTerm("ext_authz"), ast.StringTerm(InputVersion.ExtAuthz)},
			[2]*ast.Term{ast.InternedTerm("encoding"), ast.StringTerm(InputVersion.Encoding)},
		)
	case "identity":
		return in.Identity.term()
	case "mcp":
		if in.MCP == nil {
			return nil
		}
		return in.MCP.term()
	}
	return nil
}

// at is the value at path in the input document — what value() would hold
// there — or nil when there is none. It converts only what it returns: the
// attributes, the body, the claims and the arguments are walked as Go
// values first (goAt), so reading one header does not convert them all.
func (in *Input) at(path []string) ast.Value {
	if v, ok, handled := in.goAt(path); handled {
		if !ok {
			return nil
		}
		return term(v).Value
	}
	var t *ast.Term
	switch path[0] {
	case "identity":
		if len(path) > 1 {
			t, path = in.Identity.fieldTerm(path[1]), path[2:]
		} else {
			t, path = in.Identity.term(), nil
		}
	case "mcp":
		switch {
		case in.MCP == nil:
			return nil
		case len(path) > 1:
			t, path = in.MCP.fieldTerm(path[1]), path[2:]
		default:
			t, path = in.MCP.term(), nil
		}
	default:
		t = in.field(path[0])
		path = path[1:]
	}
	for _, k := range path {
		if t == nil {
			return nil
		}
		obj, ok := t.Value.(ast.Object)
		if !ok {
			return nil
		}
		t = obj.Get(ast.InternedTerm(k))
	}
	if t == nil {
		return nil
	}
	return t.Value
}

// goAt finds the JSON-like Go value at path when path leads into one of the
// parts of the input held as Go values: under attributes (path longer than
// one), parsed_body, identity.claims or mcp.arguments. handled is false
// for every other path; ok is false when there is no value there.
func (in *Input) goAt(path []string) (v any, ok, handled bool) {
	switch {
	case path[0] == "attributes":
		if in.Attributes == nil && in.AttributeAt != nil && len(path) > 1 {
			v, ok = in.AttributeAt(path[1:])
			return v, ok, true
		}
		if in.Attributes == nil && in.AttributesFunc != nil {
			in.Attributes = in.AttributesFunc()
		}
		v, ok = goLookup(in.Attributes, path[1:])
		return v, ok, true
	case path[0] == "parsed_path":
		return nonNil(in.ParsedPath), len(path) == 1, true
	case path[0] == "parsed_query":
		v, ok = goLookup(in.ParsedQuery, path[1:])
		return v, ok, true
	case path[0] == "truncated_body":
		return in.TruncatedBody, len(path) == 1, true
	case path[0] == "parsed_body":
		if in.ParsedBody == nil {
			return nil, false, true
		}
		v, ok = goLookup(in.ParsedBody, path[1:])
		return v, ok, true
	case path[0] == "identity" && len(path) > 1 && path[1] == "claims":
		claims := in.Identity.Claims
		if claims == nil {
			claims = map[string]any{}
		}
		v, ok = goLookup(claims, path[2:])
		return v, ok, true
	case path[0] == "mcp" && len(path) > 1 && path[1] == "arguments":
		if in.MCP == nil || in.MCP.Arguments == nil {
			return nil, false, true
		}
		v, ok = goLookup(in.MCP.Arguments, path[2:])
		return v, ok, true
	case path[0] == "identity" && len(path) > 1:
		// The scalar and list fields: a footprint key reads them without
		// building terms. Their values have no keys to follow.
		f, known := in.Identity.field(path[1])
		return f.value(), known && len(path) == 2, known
	case path[0] == "mcp" && len(path) > 1:
		if in.MCP == nil {
			return nil, false, true
		}
		if path[1] == "id" {
			return in.MCP.ID, in.MCP.ID != nil && len(path) == 2, true
		}
		f, present := in.MCP.field(path[1])
		return f.value(), present && len(path) == 2, true
	}
	return nil, false, false
}

// appendFieldKey appends the key encoding (appendCanonicalGo's) of the
// value at path when path names one of the identity's or the call's
// scalar or list fields, without boxing it into an interface; handled is
// false for every other path.
func (in *Input) appendFieldKey(b []byte, path []string) ([]byte, bool) {
	if len(path) < 2 {
		return b, false
	}
	var f fieldValue
	var present bool
	switch {
	case path[0] == "identity":
		var known bool
		if f, known = in.Identity.field(path[1]); !known {
			return b, false
		}
		present = true
	case path[0] == "mcp" && in.MCP == nil:
		return append(b, 'x'), true
	case path[0] == "mcp" && path[1] != "id" && path[1] != "arguments":
		f, present = in.MCP.field(path[1])
	default:
		return b, false
	}
	if !present || len(path) > 2 { // nothing there, or a key into a scalar or list
		return append(b, 'x'), true
	}
	switch f.kind {
	case fieldBool:
		if f.b {
			return append(b, 't'), true
		}
		return append(b, 'f'), true
	case fieldList:
		b = append(b, 'a')
		b = binary.AppendUvarint(b, uint64(len(f.list)))
		for _, s := range f.list {
			b = appendString(append(b, 's'), s)
		}
		return b, true
	default:
		return appendString(append(b, 's'), f.s), true
	}
}

// fieldValue is one scalar or list field of the identity or the call,
// unboxed: value, term and the cache key each read it their way.
type fieldValue struct {
	kind fieldKind
	s    string
	b    bool
	list []string
}

type fieldKind uint8

const (
	fieldString fieldKind = iota
	fieldBool
	fieldList
)

func stringField(s string) fieldValue  { return fieldValue{kind: fieldString, s: s} }
func boolField(b bool) fieldValue      { return fieldValue{kind: fieldBool, b: b} }
func listField(ss []string) fieldValue { return fieldValue{kind: fieldList, list: ss} }

// value is f as a Go value: a string, a bool or a (non-nil) []string.
func (f fieldValue) value() any {
	switch f.kind {
	case fieldBool:
		return f.b
	case fieldList:
		return nonNil(f.list)
	default:
		return f.s
	}
}

func (f fieldValue) term() *ast.Term {
	switch f.kind {
	case fieldBool:
		return ast.InternedTerm(f.b)
	case fieldList:
		return stringsTerm(f.list)
	default:
		return ast.StringTerm(f.s)
	}
}

// field is one key of term() other than claims; known is false for any
// other key. Every one of them is present.
func (id *Identity) field(k string) (f fieldValue, known bool) {
	switch k {
	case "authenticated":
		return boolField(id.Authenticated), true
	case "provider":
		return stringField(id.Provider), true
	case "kind":
		return stringField(cmp.Or(id.Kind, KindAnonymous)), true
	case "subject":
		return stringField(id.Subject), true
	case "client_id":
		return stringField(id.ClientID), true
	case "roles":
		return listField(id.Roles), true
	case "scopes":
		return listField(id.Scopes), true
	}
	return fieldValue{}, false
}

// field is one key of term() other than id and arguments; present is
// false when term() has no such key (an empty string is left out).
func (m *MCP) field(k string) (f fieldValue, present bool) {
	var s string
	switch k {
	case "method":
		s = m.Method
	case "name":
		s = m.Name
	case "tool":
		s = m.Tool
	case "resource":
		s = m.Resource
	case "prompt":
		s = m.Prompt
	case "protocol_version":
		s = m.ProtocolVersion
	case "session_id":
		s = m.SessionID
	case "source":
		s = m.Source
	case "truncated":
		return boolField(m.Truncated), true
	}
	return stringField(s), s != ""
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

// goLookup follows object keys through a JSON-like Go value.
func goLookup(v any, path []string) (any, bool) {
	for _, k := range path {
		var ok bool
		switch m := v.(type) {
		case map[string]any:
			v, ok = m[k]
		case map[string]string:
			v, ok = m[k]
		case map[string][]string:
			v, ok = m[k]
		}
		if !ok {
			return nil, false
		}
	}
	return v, true
}

// fieldTerm is the term of one key of term() other than claims, without
// building the rest; nil when term() has no such key.
func (id *Identity) fieldTerm(k string) *ast.Term {
	if f, known := id.field(k); known {
		return f.term()
	}
	return nil
}

func (id *Identity) term() *ast.Term {
	claims := id.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	kind := id.Kind
	if kind == "" {
		kind = KindAnonymous
	}
	return ast.ObjectTerm(
		[2]*ast.Term{ast.InternedTerm("authenticated"), ast.InternedTerm(id.Authenticated)},
		[2]*ast.Term{ast.InternedTerm("provider"), ast.StringTerm(id.Provider)},
		[2]*ast.Term{ast.InternedTerm("kind"), ast.StringTerm(kind)},
		[2]*ast.Term{ast.InternedTerm("subject"), ast.StringTerm(id.Subject)},
		[2]*ast.Term{ast.InternedTerm("client_id"), ast.StringTerm(id.ClientID)},
		[2]*ast.Term{ast.InternedTerm("roles"), stringsTerm(id.Roles)},
		[2]*ast.Term{ast.InternedTerm("scopes"), stringsTerm(id.Scopes)},
		[2]*ast.Term{ast.InternedTerm("claims"), term(claims)},
	)
}

// fieldTerm is the term of one key of term() other than arguments,
// without building the rest; nil when term() has no such key.
func (m *MCP) fieldTerm(k string) *ast.Term {
	if k == "id" {
		if m.ID == nil {
			return nil
		}
		return term(m.ID)
	}
	if f, present := m.field(k); present {
		return f.term()
	}
	return nil
}

func (m *MCP) term() *ast.Term {
	terms := make([][2]*ast.Term, 0, 12)
	str := func(k, v string) {
		if v != "" {
			terms = append(terms, [2]*ast.Term{ast.InternedTerm(k), ast.StringTerm(v)})
		}
	}
	str("method", m.Method)
	if m.ID != nil {
		terms = append(terms, [2]*ast.Term{ast.InternedTerm("id"), term(m.ID)})
	}
	str("name", m.Name)
	str("tool", m.Tool)
	str("resource", m.Resource)
	str("prompt", m.Prompt)
	if m.Arguments != nil {
		terms = append(terms, [2]*ast.Term{ast.InternedTerm("arguments"), term(m.Arguments)})
	}
	str("protocol_version", m.ProtocolVersion)
	str("session_id", m.SessionID)
	str("source", m.Source)
	terms = append(terms, [2]*ast.Term{ast.InternedTerm("truncated"), ast.InternedTerm(m.Truncated)})
	return ast.ObjectTerm(terms...)
}

func stringsTerm(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}

// term converts a JSON-like Go value: the shapes encoding/json produces
// (with or without UseNumber) plus []string, map[string]string and
// map[string][]string. Anything else goes through OPA's generic conversion.
func term(v any) *ast.Term {
	switch v := v.(type) {
	case nil:
		return ast.InternedNullTerm
	case string:
		return ast.StringTerm(v)
	case bool:
		return ast.InternedTerm(v)
	case json.Number:
		return ast.NumberTerm(v)
	case float64:
		return ast.NumberTerm(json.Number(strconv.FormatFloat(v, 'g', -1, 64)))
	case int:
		return ast.InternedTerm(v)
	case int64:
		return ast.NumberTerm(json.Number(strconv.FormatInt(v, 10)))
	case []any:
		ts := make([]*ast.Term, len(v))
		for i, e := range v {
			ts[i] = term(e)
		}
		return ast.ArrayTerm(ts...)
	case []string:
		return stringsTerm(v)
	case map[string]any:
		kvs := make([][2]*ast.Term, 0, len(v))
		for k, e := range v {
			kvs = append(kvs, [2]*ast.Term{ast.StringTerm(k), term(e)})
		}
		return ast.ObjectTerm(kvs...)
	case map[string]string:
		kvs := make([][2]*ast.Term, 0, len(v))
		for k, e := range v {
			kvs = append(kvs, [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(e)})
		}
		return ast.ObjectTerm(kvs...)
	case map[string][]string:
		kvs := make([][2]*ast.Term, 0, len(v))
		for k, e := range v {
			kvs = append(kvs, [2]*ast.Term{ast.StringTerm(k), stringsTerm(e)})
		}
		return ast.ObjectTerm(kvs...)
	default:
		val, err := ast.InterfaceToValue(v)
		if err != nil {
			return ast.InternedNullTerm
		}
		return ast.NewTerm(val)
	}
}

// MarshalJSON renders the input exactly as the policy sees it, from the same
// AST value Eval uses.
func (in *Input) MarshalJSON() ([]byte, error) {
	v, err := ast.JSON(in.value())
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}
