package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	oparego "github.com/open-policy-agent/opa/v1/rego"
)

// ReasonUndefined is the reason of the denial when the decision rule is
// undefined for the input (no rule matched and there is no default).
const ReasonUndefined = "policy decision undefined"

// maxCost bounds the rate-limit cost a policy may assign to one call.
const maxCost = 1_000_000

// decisionFromResult reads the decision from a result set: a boolean, or an
// object with the keys of DESIGN.md's decision contract.
func decisionFromResult(rs oparego.ResultSet) (Decision, error) {
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return Decision{Reason: ReasonUndefined, Cost: 1}, nil
	}
	if len(rs) > 1 {
		return Decision{}, errors.New("decision has more than one result")
	}
	return DecisionFromValue(rs[0].Expressions[0].Value)
}

// DecisionFromValue reads a decision from a JSON-like value (as
// encoding/json or OPA produce): a boolean, or an object with the keys
// allowed, reason, http_status, headers, request_headers_to_remove,
// response_headers_to_add, query_parameters_to_set,
// query_parameters_to_remove, body, dynamic_metadata, scopes and cost.
// Unknown keys are ignored, as in opa-envoy-plugin. A key of the wrong type
// is an error: the caller denies rather than guess.
func DecisionFromValue(v any) (Decision, error) {
	switch v := v.(type) {
	case bool:
		return Decision{Allowed: v, Cost: 1}, nil
	case map[string]any:
		return decisionFromObject(v)
	default:
		return Decision{}, fmt.Errorf("decision is %s, want a boolean or an object", typeName(v))
	}
}

func decisionFromObject(m map[string]any) (Decision, error) {
	d := Decision{Cost: 1}
	allowed, ok := m["allowed"]
	if !ok {
		return Decision{}, errors.New(`decision object has no "allowed" key`)
	}
	if d.Allowed, ok = allowed.(bool); !ok {
		return Decision{}, fmt.Errorf(`decision "allowed" is %s, want a boolean`, typeName(allowed))
	}
	var errs []error
	field := func(key string, parse func(any) error) {
		if v, ok := m[key]; ok {
			if err := parse(v); err != nil {
				errs = append(errs, fmt.Errorf("decision %q: %w", key, err))
			}
		}
	}
	field("reason", func(v any) (err error) { d.Reason, err = asString(v); return })
	field("body", func(v any) (err error) { d.Body, err = asString(v); return })
	field("http_status", func(v any) error {
		n, err := asInt(v)
		if err == nil && (n < 100 || n > 599) {
			err = fmt.Errorf("%d is not an HTTP status", n)
		}
		d.HTTPStatus = int(n)
		return err
	})
	field("cost", func(v any) error {
		n, err := asInt(v)
		if err == nil && (n < 0 || n > maxCost) {
			err = fmt.Errorf("%d is out of range [0, %d]", n, maxCost)
		}
		d.Cost = n
		return err
	})
	field("headers", func(v any) (err error) { d.Headers, err = asHeaders(v); return })
	field("response_headers_to_add", func(v any) (err error) { d.ResponseHeadersToAdd, err = asHeaders(v); return })
	field("request_headers_to_remove", func(v any) (err error) { d.RequestHeadersToRemove, err = asStrings(v); return })
	field("query_parameters_to_remove", func(v any) (err error) { d.QueryParametersToRemove, err = asStrings(v); return })
	field("query_parameters_to_set", func(v any) (err error) { d.QueryParametersToSet, err = asQuery(v); return })
	field("scopes", func(v any) error {
		if s, ok := v.(string); ok {
			d.Scopes = strings.Fields(s)
			return nil
		}
		var err error
		d.Scopes, err = asStrings(v)
		return err
	})
	field("dynamic_metadata", func(v any) error {
		md, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("is %s, want an object", typeName(v))
		}
		d.DynamicMetadata = md
		return nil
	})
	if len(errs) > 0 {
		return Decision{}, errors.Join(errs...)
	}
	return d, nil
}

// asHeaders reads headers in either form opa-envoy-plugin accepts — an
// object, or an array of objects — where each value is a string or an array
// of strings. Portcullis makes the append semantics explicit: the first
// value of a key replaces what the request had, later values are appended;
// a value written as {"value": "v", "append": true} is appended.
func asHeaders(v any) ([]Header, error) {
	var objs []map[string]any
	switch v := v.(type) {
	case map[string]any:
		objs = []map[string]any{v}
	case []any:
		for _, e := range v {
			o, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("array element is %s, want an object", typeName(e))
			}
			objs = append(objs, o)
		}
	default:
		return nil, fmt.Errorf("is %s, want an object", typeName(v))
	}
	var out []Header
	seen := map[string]bool{}
	for _, o := range objs {
		for _, k := range sortedKeys(o) {
			if !validHeaderName(k) {
				return nil, fmt.Errorf("%q is not a valid header name", clip(k))
			}
			lk := strings.ToLower(k)
			add := func(val string, explicitAppend bool) {
				out = append(out, Header{Key: lk, Value: val, Append: explicitAppend || seen[lk]})
				seen[lk] = true
			}
			switch val := o[k].(type) {
			case string:
				add(val, false)
			case []any:
				for _, e := range val {
					s, ok := e.(string)
					if !ok {
						return nil, fmt.Errorf("header %q: value is %s, want a string", clip(k), typeName(e))
					}
					add(s, false)
				}
			case map[string]any:
				s, ok := val["value"].(string)
				if !ok {
					return nil, fmt.Errorf(`header %q: want {"value": string, "append": bool}`, clip(k))
				}
				app, _ := val["append"].(bool)
				add(s, app)
			default:
				return nil, fmt.Errorf("header %q: value is %s, want a string", clip(k), typeName(val))
			}
		}
	}
	for _, h := range out {
		if strings.ContainsAny(h.Value, "\r\n\x00") {
			return nil, fmt.Errorf("header %q: value contains CR, LF or NUL", clip(h.Key))
		}
	}
	return out, nil
}

func asQuery(v any) ([]QueryParameter, error) {
	o, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("is %s, want an object", typeName(v))
	}
	var out []QueryParameter
	for _, k := range sortedKeys(o) {
		switch val := o[k].(type) {
		case string:
			out = append(out, QueryParameter{Key: k, Value: val})
		case []any:
			for _, e := range val {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("parameter %q: value is %s, want a string", clip(k), typeName(e))
				}
				out = append(out, QueryParameter{Key: k, Value: s})
			}
		default:
			return nil, fmt.Errorf("parameter %q: value is %s, want a string", clip(k), typeName(val))
		}
	}
	return out, nil
}

func asString(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("is %s, want a string", typeName(v))
	}
	return s, nil
}

func asStrings(v any) ([]string, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("is %s, want an array of strings", typeName(v))
	}
	out := make([]string, 0, len(a))
	for _, e := range a {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("element is %s, want a string", typeName(e))
		}
		out = append(out, s)
	}
	return out, nil
}

func asInt(v any) (int64, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			return 0, fmt.Errorf("%q is not an integer", clip(n.String()))
		}
		return i, nil
	case float64:
		if n != float64(int64(n)) {
			return 0, fmt.Errorf("%v is not an integer", n)
		}
		return int64(n), nil
	case int:
		return int64(n), nil
	case int64:
		return n, nil
	default:
		return 0, fmt.Errorf("is %s, want an integer", typeName(v))
	}
}

// validHeaderName reports whether s is an HTTP token (RFC 9110) and not a
// pseudo-header.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64, int, int64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
