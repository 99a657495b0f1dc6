package policy

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
