package extauthz

import (
	"encoding/json"
	"math"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/portcullis-mcp/portcullis/policy"
)

// The dynamic metadata of a CheckResponse is written in its wire form, as
// the response's unknown fields, instead of as a structpb.Struct in
// DynamicMetadata. protobuf-go encodes map fields through reflection: a
// Struct of seven strings cost 2 µs and 13 allocations to marshal, twice
// over (gRPC sizes, then marshals), a tenth of an allowed Check. The bytes
// are exactly what proto.Marshal writes for the field, and proto.Marshal
// writes unknown fields verbatim, so Envoy decodes dynamic_metadata as
// usual; in process, GetDynamicMetadata is nil until the response has been
// through the wire (the tests decode it with proto.Unmarshal).
var metadataField = protowire.Number((&authv3.CheckResponse{}).ProtoReflect().Descriptor().
	Fields().ByName("dynamic_metadata").Number())

// Field numbers of google.protobuf.Struct, its map entries, Value and
// ListValue (struct.proto).
const (
	structFields protowire.Number = 1
	entryKey     protowire.Number = 1
	entryValue   protowire.Number = 2
	valueNull    protowire.Number = 1
	valueNumber  protowire.Number = 2
	valueString  protowire.Number = 3
	valueBool    protowire.Number = 4
	valueStruct  protowire.Number = 5
	valueList    protowire.Number = 6
	listValues   protowire.Number = 1
)

// setDynamicMetadata gives resp the metadata emitted with every decision:
// the policy's own keys, then ours, which win. A string that is not UTF-8
// anywhere in it (structpb cannot hold one) leaves the decision id alone.
func setDynamicMetadata(resp *authv3.CheckResponse, r *request, d *policy.Decision, decisionID string) {
	var buf [7]metaEntry
	ours := buf[:0]
	id := r.in.Identity
	var method, name string
	if c := r.in.MCP; c != nil {
		method, name = c.Method, c.Name
	}
	for _, e := range [...]metaEntry{{key: MetaSubject, str: id.Subject}, {key: MetaClientID, str: id.ClientID},
		{key: MetaProvider, str: id.Provider}, {key: MetaMCPMethod, str: method}, {key: MetaMCPName, str: name}} {
		if e.str != "" {
			ours = append(ours, e)
		}
	}
	ours = append(ours, metaEntry{key: MetaDecisionID, str: decisionID}, metaEntry{key: MetaCost, num: float64(d.Cost), isNum: true})

	entries := ours
	for k, v := range d.DynamicMetadata {
		if !hasKey(ours, k) {
			entries = append(entries, metaEntry{key: k, val: structValue(v), isAny: true})
		}
	}
	if !entriesValid(entries) {
		entries = append(buf[:0], metaEntry{key: MetaDecisionID, str: decisionID})
	}
	setMetadataEntries(resp, entries)
}

// setMetadataEntries writes entries as resp's dynamic_metadata.
func setMetadataEntries(resp *authv3.CheckResponse, entries []metaEntry) {
	size := entriesSize(entries)
	b := make([]byte, 0, protowire.SizeTag(metadataField)+protowire.SizeBytes(size))
	b = protowire.AppendTag(b, metadataField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = appendEntries(b, entries)
	resp.ProtoReflect().SetUnknown(protoreflect.RawFields(b))
}

// metaEntry is one key of a Struct. Our own values are held unboxed: a
// string in str, or a number in num (isNum); a policy's value, through
// structValue, in val (isAny).
type metaEntry struct {
	key   string
	str   string
	num   float64
	val   any
	isNum bool
	isAny bool
}

func hasKey(es []metaEntry, k string) bool {
	for _, e := range es {
		if e.key == k {
			return true
		}
	}
	return false
}

// mapEntries turns a nested object into entries; the order of a Struct's
// entries on the wire carries no meaning.
func mapEntries(m map[string]any) []metaEntry {
	es := make([]metaEntry, 0, len(m))
	for k, v := range m {
		es = append(es, metaEntry{key: k, val: v, isAny: true})
	}
	return es
}

func entriesValid(es []metaEntry) bool {
	for _, e := range es {
		if !utf8.ValidString(e.key) || !utf8.ValidString(e.str) || e.isAny && !valueValid(e.val) {
			return false
		}
	}
	return true
}

func valueValid(v any) bool {
	switch v := v.(type) {
	case string:
		return utf8.ValidString(v)
	case map[string]any:
		for k, e := range v {
			if !utf8.ValidString(k) || !valueValid(e) {
				return false
			}
		}
	case []any:
		for _, e := range v {
			if !valueValid(e) {
				return false
			}
		}
	}
	return true
}

// entriesSize is the size of a Struct holding es.
func entriesSize(es []metaEntry) int {
	n := 0
	for i := range es {
		n += protowire.SizeTag(structFields) + protowire.SizeBytes(entrySize(&es[i]))
	}
	return n
}

func entrySize(e *metaEntry) int {
	return protowire.SizeTag(entryKey) + protowire.SizeBytes(len(e.key)) +
		protowire.SizeTag(entryValue) + protowire.SizeBytes(entryValueSize(e))
}

func entryValueSize(e *metaEntry) int {
	switch {
	case e.isAny:
		return valueSize(e.val)
	case e.isNum:
		return protowire.SizeTag(valueNumber) + protowire.SizeFixed64()
	default:
		return protowire.SizeTag(valueString) + protowire.SizeBytes(len(e.str))
	}
}

// valueSize is the size of a google.protobuf.Value holding v: one of nil,
// bool, float64, string, map[string]any or []any (structValue's output).
func valueSize(v any) int {
	switch v := v.(type) {
	case bool:
		return protowire.SizeTag(valueBool) + 1
	case float64:
		return protowire.SizeTag(valueNumber) + protowire.SizeFixed64()
	case string:
		return protowire.SizeTag(valueString) + protowire.SizeBytes(len(v))
	case map[string]any:
		return protowire.SizeTag(valueStruct) + protowire.SizeBytes(entriesSize(mapEntries(v)))
	case []any:
		return protowire.SizeTag(valueList) + protowire.SizeBytes(listSize(v))
	default:
		return protowire.SizeTag(valueNull) + 1
	}
}

func listSize(vs []any) int {
	n := 0
	for _, e := range vs {
		n += protowire.SizeTag(listValues) + protowire.SizeBytes(valueSize(e))
	}
	return n
}

func appendEntries(b []byte, es []metaEntry) []byte {
	for i := range es {
		e := &es[i]
		b = protowire.AppendTag(b, structFields, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entrySize(e)))
		b = protowire.AppendTag(b, entryKey, protowire.BytesType)
		b = protowire.AppendString(b, e.key)
		b = protowire.AppendTag(b, entryValue, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entryValueSize(e)))
		switch {
		case e.isAny:
			b = appendValue(b, e.val)
		case e.isNum:
			b = protowire.AppendTag(b, valueNumber, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(e.num))
		default:
			b = protowire.AppendTag(b, valueString, protowire.BytesType)
			b = protowire.AppendString(b, e.str)
		}
	}
	return b
}

func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case bool:
		b = protowire.AppendTag(b, valueBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v))
	case float64:
		b = protowire.AppendTag(b, valueNumber, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v))
	case string:
		b = protowire.AppendTag(b, valueString, protowire.BytesType)
		return protowire.AppendString(b, v)
	case map[string]any:
		es := mapEntries(v)
		b = protowire.AppendTag(b, valueStruct, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entriesSize(es)))
		return appendEntries(b, es)
	case []any:
		b = protowire.AppendTag(b, valueList, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(listSize(v)))
		for _, e := range v {
			b = protowire.AppendTag(b, listValues, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(valueSize(e)))
			b = appendValue(b, e)
		}
		return b
	default: // nil: NULL_VALUE, 0
		b = protowire.AppendTag(b, valueNull, protowire.VarintType)
		return protowire.AppendVarint(b, 0)
	}
}

// structValue converts the values OPA returns (json.Number) into the ones
// a google.protobuf.Value holds; anything else becomes null.
func structValue(v any) any {
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return v.String()
		}
		return f
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = structValue(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = structValue(e)
		}
		return out
	case nil, bool, string, float64:
		return v
	default:
		return nil
	}
}
