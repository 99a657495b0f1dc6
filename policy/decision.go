package policy

import "strings"

// Decision is what the policy decided about one request, in the terms of
// DESIGN.md's decision contract. The zero Decision denies.
type Decision struct {
	// Allowed is the effect: true lets the request through.
	Allowed bool
	// Reason explains the decision, for the audit log and error bodies.
	Reason string
	// HTTPStatus is the status of a denial; 0 means the default (403).
	HTTPStatus int
	// Headers go to the upstream when allowed and to the client when denied.
	Headers []Header
	// RequestHeadersToRemove are removed from the upstream request.
	RequestHeadersToRemove []string
	// ResponseHeadersToAdd are added to the response sent to the client
	// when the request is allowed.
	ResponseHeadersToAdd []Header
	// QueryParametersToSet and QueryParametersToRemove rewrite the query
	// string of an allowed request.
	QueryParametersToSet    []QueryParameter
	QueryParametersToRemove []string
	// Body, when set, replaces the body of a denial.
	Body string
	// DynamicMetadata is merged into the CheckResponse's dynamic metadata.
	DynamicMetadata map[string]any
	// Scopes are the scopes the policy requires, for an insufficient_scope
	// challenge.
	Scopes []string
	// Cost is the number of rate-limit hits this call counts for; 1 unless
	// the policy says otherwise.
	Cost int64
	// DryRun is true when the engine runs in dry-run mode and this decision
	// was turned into an allow: Reason then holds the real reason.
	DryRun bool
}

// Header is one header mutation. Append false replaces any existing value
// (overwrite-or-add); true adds a value next to the existing ones.
type Header struct {
	Key    string
	Value  string
	Append bool
}

// QueryParameter is one query parameter to set.
type QueryParameter struct {
	Key   string
	Value string
}

// detached returns d with every string copied, for the decision cache. A
// policy can return strings of its input (a tool name, a header), and the
// input's strings can be parts of a larger allocation (the extauthz codec
// makes every string of a CheckRequest a part of one); a cached decision
// holding one would keep that whole request in memory for as long as the
// entry lives.
func (d Decision) detached() Decision {
	d.Reason, d.Body = strings.Clone(d.Reason), strings.Clone(d.Body)
	d.Headers = cloneEach(d.Headers, cloneHeader)
	d.ResponseHeadersToAdd = cloneEach(d.ResponseHeadersToAdd, cloneHeader)
	d.RequestHeadersToRemove = cloneEach(d.RequestHeadersToRemove, strings.Clone)
	d.QueryParametersToRemove = cloneEach(d.QueryParametersToRemove, strings.Clone)
	d.Scopes = cloneEach(d.Scopes, strings.Clone)
	d.QueryParametersToSet = cloneEach(d.QueryParametersToSet, func(q QueryParameter) QueryParameter {
		return QueryParameter{Key: strings.Clone(q.Key), Value: strings.Clone(q.Value)}
	})
	if d.DynamicMetadata != nil {
		d.DynamicMetadata = cloneValue(d.DynamicMetadata).(map[string]any)
	}
	return d
}

func cloneHeader(h Header) Header {
	return Header{Key: strings.Clone(h.Key), Value: strings.Clone(h.Value), Append: h.Append}
}

// cloneEach returns a new slice of clone applied to each element; nil
// stays nil.
func cloneEach[T any](s []T, clone func(T) T) []T {
	if s == nil {
		return nil
	}
	out := make([]T, len(s))
	for i, v := range s {
		out[i] = clone(v)
	}
	return out
}

// cloneValue deep-copies a JSON-like value: maps, arrays and strings are
// copied, other values (numbers, booleans, nil) are kept.
func cloneValue(v any) any {
	switch v := v.(type) {
	case string:
		return strings.Clone(v)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[strings.Clone(k)] = cloneValue(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneValue(e)
		}
		return out
	default:
		return v
	}
}
