package policy

import (
	"encoding/json"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
)

// value converts the input to an AST value directly, without the JSON round
// trip OPA would make for a Go struct.
func (in *Input) value() ast.Value {
	terms := make([][2]*ast.Term, 0, 8)
	add := func(k string, v *ast.Term) {
		terms = append(terms, [2]*ast.Term{ast.InternedTerm(k), v})
	}
	add("attributes", term(in.Attributes))
	add("parsed_path", stringsTerm(in.ParsedPath))
	q := make([][2]*ast.Term, 0, len(in.ParsedQuery))
	for k, vs := range in.ParsedQuery {
		q = append(q, [2]*ast.Term{ast.StringTerm(k), stringsTerm(vs)})
	}
	add("parsed_query", ast.ObjectTerm(q...))
	if in.ParsedBody != nil {
		add("parsed_body", term(in.ParsedBody))
	}
	add("truncated_body", ast.InternedTerm(in.TruncatedBody))
	add("version", ast.ObjectTerm(
		[2]*ast.Term{ast.InternedTerm("ext_authz"), ast.StringTerm(InputVersion.ExtAuthz)},
		[2]*ast.Term{ast.InternedTerm("encoding"), ast.StringTerm(InputVersion.Encoding)},
	))
	add("identity", in.Identity.term())
	if in.MCP != nil {
		add("mcp", in.MCP.term())
	}
	return ast.NewObject(terms...)
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
