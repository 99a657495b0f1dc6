package policy

import (
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// TestDecisionDetached: a decision stored in the cache shares no memory
// with the strings it was made of, and is otherwise the same.
func TestDecisionDetached(t *testing.T) {
	req := strings.Repeat("request ", 64) // the input's one allocation
	s := func(i int) string { return req[i : i+7] }
	d := Decision{
		Allowed: true, Reason: s(0), Body: s(8), HTTPStatus: 403, Cost: 2,
		Headers:                 []Header{{Key: s(16), Value: s(24)}},
		ResponseHeadersToAdd:    []Header{{Key: s(32), Value: s(40), Append: true}},
		RequestHeadersToRemove:  []string{s(48)},
		QueryParametersToSet:    []QueryParameter{{Key: s(56), Value: s(64)}},
		QueryParametersToRemove: []string{s(72)},
		Scopes:                  []string{s(80)},
		DynamicMetadata:         map[string]any{s(88): []any{s(96), map[string]any{"n": 1.5, s(104): s(112)}, true, nil}},
	}
	got := d.detached()
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("detached changed the decision:\n%+v\nwant\n%+v", got, d)
	}
	start := uintptr(unsafe.Pointer(unsafe.StringData(req)))
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case string:
			if p := uintptr(unsafe.Pointer(unsafe.StringData(v))); p >= start && p < start+uintptr(len(req)) {
				t.Errorf("%s still points into the request", path)
			}
		case map[string]any:
			for k, e := range v {
				walk(path+" key", k)
				walk(path+"."+k, e)
			}
		case []any:
			for _, e := range v {
				walk(path+"[]", e)
			}
		}
	}
	walk("reason", got.Reason)
	walk("body", got.Body)
	for _, h := range append(got.Headers, got.ResponseHeadersToAdd...) {
		walk("header key", h.Key)
		walk("header value", h.Value)
	}
	for _, x := range append(append(got.RequestHeadersToRemove, got.QueryParametersToRemove...), got.Scopes...) {
		walk("string list", x)
	}
	walk("query key", got.QueryParametersToSet[0].Key)
	walk("query value", got.QueryParametersToSet[0].Value)
	walk("dynamic_metadata", got.DynamicMetadata)
	if (Decision{}).detached().Headers != nil {
		t.Error("detached made a nil slice non-nil")
	}
}
