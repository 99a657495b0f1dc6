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
	d.Headers = cloneHeaders(d.Headers)
	d.ResponseHeadersToAdd = cloneHeaders(d.ResponseHeadersToAdd)
	d.RequestHeadersToRemove = cloneStrings(d.RequestHeadersToRemove)
	d.QueryParametersToRemove = cloneStrings(d.QueryParametersToRemove)
	d.Scopes = cloneStrings(d.Scopes)
	if d.QueryParametersToSet != nil {
		qs := make([]QueryParameter, len(d.QueryParametersToSet))
		for i, q := range d.QueryParametersToSet {
			qs[i] = QueryParameter{Key: strings.Clone(q.Key), Value: strings.Clone(q.Value)}
		}
		d.QueryParametersToSet = qs
	}
	if d.DynamicMetadata != nil {
		d.DynamicMetadata = cloneValue(d.DynamicMetadata).(map[string]any)
	}
	return d
}

func cloneHeaders(hs []Header) []Header {
	if hs == nil {
		return nil
	}
	out := make([]Header, len(hs))
	for i, h := range hs {
		out[i] = Header{Key: strings.Clone(h.Key), Value: strings.Clone(h.Value), Append: h.Append}
	}
	return out
}

func cloneStrings(ss []string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.Clone(s)
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
