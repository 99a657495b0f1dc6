package extauthz

import (
	"bytes"
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// viaJSON is the reference: protojson, then encoding/json with UseNumber.
func viaJSON(t testing.TB, attrs *authv3.AttributeContext) map[string]any {
	t.Helper()
	b, err := protojson.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	m := map[string]any{}
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAttributesMatchProtojson checks the direct walk against protojson on
// every field kind an AttributeContext can hold.
func TestAttributesMatchProtojson(t *testing.T) {
	st, _ := structpb.NewStruct(map[string]any{
		"method": "tools/call", "id": 3.0, "big": 1e300, "neg": -0.5, "ok": true, "nothing": nil,
		"params": map[string]any{"name": "x", "list": []any{1.0, "a", nil, map[string]any{}}},
	})
	typed, _ := anypb.New(durationpb.New(1500e6))
	attrsList := []*authv3.AttributeContext{
		{},
		{
			Source: &authv3.AttributeContext_Peer{
				Address:     &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 4444}, Protocol: corev3.SocketAddress_UDP}}},
				Principal:   "spiffe://cluster.local/ns/a/sa/b",
				Labels:      map[string]string{"app": "x"},
				Certificate: "-----BEGIN%20CERTIFICATE-----",
			},
			Request: &authv3.AttributeContext_Request{
				Time: &timestamppb.Timestamp{Seconds: 1763719200, Nanos: 120000000},
				Http: &authv3.AttributeContext_HttpRequest{
					Id: "1", Method: "POST", Path: "/mcp?x=1", Host: "h", Size: 1 << 40,
					Headers:   map[string]string{"a": "b", ":path": "/mcp"},
					HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "k", Value: "v"}, {Key: "raw", RawValue: []byte{0, 1, 255}}}},
					RawBody:   []byte("{\"a\":1}\xff"),
				},
			},
			ContextExtensions: map[string]string{"route": "mcp"},
			MetadataContext: &corev3.Metadata{
				FilterMetadata:      map[string]*structpb.Struct{"envoy.filters.http.mcp": st},
				TypedFilterMetadata: map[string]*anypb.Any{"typed": typed},
			},
			TlsSession: &authv3.AttributeContext_TLSSession{Sni: "mcp.example.com"},
		},
	}
	for _, ns := range []int32{1, 1000, 1000000, 999999999} {
		attrsList = append(attrsList, &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Time: &timestamppb.Timestamp{Seconds: -5, Nanos: ns}}})
	}
	files, _ := filepath.Glob("testdata/input/*.json")
	for _, f := range files {
		if filepath.Ext(f[:len(f)-5]) != ".golden" {
			attrsList = append(attrsList, readCheckRequest(t, f).GetAttributes())
		}
	}
	for i, attrs := range attrsList {
		got, err := attributesMap(attrs)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(viaJSON(t, attrs), got); diff != "" {
			t.Errorf("case %d: attributes differ from protojson (-want +got):\n%s", i, diff)
		}
		checkAttributeAt(t, i, attrs, got)
	}
}

// checkAttributeAt checks attributeAt against the whole map at every path
// the map has, and at paths it does not.
func checkAttributeAt(t *testing.T, i int, attrs *authv3.AttributeContext, full map[string]any) {
	t.Helper()
	var paths [][]string
	var walk func(v any, p []string)
	walk = func(v any, p []string) {
		paths = append(paths, slices.Clone(p), append(slices.Clone(p), "nope"))
		if m, ok := v.(map[string]any); ok {
			for k, e := range m {
				walk(e, append(slices.Clone(p), k))
			}
		}
	}
	walk(full, nil)
	// The paths commonAttribute answers, whether or not the map has them.
	for _, p := range []string{"request.http.method", "request.http.path", "request.http.host", "request.http.scheme",
		"request.http.protocol", "request.http.headers.a", "request.http.headers.:path", "request.http.headers.nope",
		"request.http.id", "source.principal", "source.address.socketAddress.address", "source.address.socketAddress.portValue",
		"destination.principal", "destination.address.socketAddress.address", "source.address.socketAddress.address.x"} {
		paths = append(paths, strings.Split(p, "."))
	}
	for _, p := range paths {
		want, wantOK := jsonValueAt(full, p)
		got, ok := attributeAt(attrs, p)
		if ok != wantOK || !cmp.Equal(got, want) {
			t.Errorf("case %d: attributeAt(%v) = %v, %v; the map has %v, %v", i, p, got, ok, want, wantOK)
		}
	}
}

func TestFloatValue(t *testing.T) {
	for f, want := range map[float64]any{math.NaN(): "NaN", math.Inf(1): "Infinity", math.Inf(-1): "-Infinity", 1.5: json.Number("1.5")} {
		if got := floatValue(f, 64); got != want {
			t.Errorf("floatValue(%v) = %v, want %v", f, got, want)
		}
	}
}

func BenchmarkAttributes(b *testing.B) {
	attrs := readCheckRequest(b, "testdata/input/mcp_tools_call.json").GetAttributes()
	b.Run("walk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = attributesMap(attrs)
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			viaJSON(b, attrs)
		}
	})
}
