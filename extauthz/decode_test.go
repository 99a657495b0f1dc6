package extauthz

import (
	"math/rand"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// envoyCheck is a CheckRequest as Envoy's HTTP ext_authz filter sends it
// for an MCP call with the request body.
func envoyCheck(n int) *authv3.CheckRequest {
	body := `{"jsonrpc":"2.0","id":` + strconv.Itoa(n) + `,"method":"tools/call","params":{"name":"fs.read","arguments":{"path":"/docs/a.md"}}}`
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      tcpPeer("10.1.0."+strconv.Itoa(n%250), 40000+uint32(n)),
		Destination: tcpPeer("10.1.9.9", 8080),
		Request: &authv3.AttributeContext_Request{
			Time: &timestamppb.Timestamp{Seconds: 1_790_000_000, Nanos: 123_000},
			Http: &authv3.AttributeContext_HttpRequest{
				Id: strconv.Itoa(n), Method: "POST", Path: "/mcp", Host: "mcp.example.com", Scheme: "https", Protocol: "HTTP/1.1",
				Headers: map[string]string{
					":authority": "mcp.example.com", ":method": "POST", ":path": "/mcp", ":scheme": "https",
					"authorization": "Bearer " + strings.Repeat("eyJhbGciOi", 60), "content-type": "application/json",
					"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25",
					"x-request-id": "00000000-0000-4000-8000-" + strconv.Itoa(100000000000+n), "content-length": strconv.Itoa(len(body)),
				},
				Body: body, Size: int64(len(body)),
			},
		},
	}}
}

func tcpPeer(ip string, port uint32) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}}
}

// everyField is envoyCheck with every field the decoder reads itself or
// hands to generated code set.
func everyField() *authv3.CheckRequest {
	r := envoyCheck(3)
	a := r.Attributes
	a.Source.Principal = "spiffe://cluster.local/ns/agents/sa/agent"
	a.Source.Certificate = "-----BEGIN%20CERTIFICATE-----"
	a.Source.Service = "agent"
	a.Source.Labels = map[string]string{"app": "agent", "version": "v2"}
	a.Destination.Address.GetSocketAddress().Protocol = corev3.SocketAddress_UDP
	a.ContextExtensions = map[string]string{"route": "mcp", "tenant": "acme"}
	a.TlsSession = &authv3.AttributeContext_TLSSession{Sni: "mcp.example.com"}
	st, _ := structpb.NewStruct(map[string]any{"sub": "alice", "roles": []any{"dev"}})
	a.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": st}}
	a.RouteMetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"portcullis": st}}
	h := a.Request.Http
	h.Query, h.Fragment = "a=1", "top"
	h.RawBody = []byte{0xff, 0x00, 'x'}
	h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":path", RawValue: []byte("/mcp")}, {Key: "x-b", Value: "2"}, {Key: "x-b", RawValue: []byte{0xfe}},
	}}
	return r
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeCheckRequest: what Envoy sends takes the decoder's own path
// and decodes to what generated code makes of it.
func TestDecodeCheckRequest(t *testing.T) {
	for name, req := range map[string]*authv3.CheckRequest{
		"envoy":       envoyCheck(7),
		"every field": everyField(),
		"empty":       {},
		"empty parts": {Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{}, Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}},
	} {
		t.Run(name, func(t *testing.T) {
			b := marshal(t, req)
			var got authv3.CheckRequest
			if !decodeCheckRequest(b, &got) {
				t.Fatal("decodeCheckRequest gave up on a request it should read")
			}
			if !proto.Equal(&got, req) {
				t.Fatalf("decoded\n%v\nwant\n%v", &got, req)
			}
		})
	}
}

// TestDecodeCheckRequestGivesUp: inputs outside what the decoder reads go
// to generated code, and the codec's result is generated code's.
func TestDecodeCheckRequestGivesUp(t *testing.T) {
	attrs := func(extra []byte) []byte { // a CheckRequest whose attributes end with extra
		a := marshal(t, envoyCheck(1).Attributes)
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), append(a, extra...))
	}
	unknown := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1)
	named := envoyCheck(1)
	named.Attributes.Source.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_NamedPort{NamedPort: "http"}
	pipe := envoyCheck(1)
	pipe.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/envoy.sock"}}}
	twice := marshal(t, envoyCheck(1))
	twice = append(twice, marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: tcpPeer("10.9.9.9", 1)}})...)
	// A CheckRequest whose HTTP request is only the field f.
	inHTTP := func(f []byte) []byte {
		b := f
		for _, num := range []protowire.Number{2, 4, 1} { // http, request, attributes
			b = protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
		}
		return b
	}
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	header := func(k, v string) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), append(str(1, k), str(2, v)...))
	}
	if !decodeCheckRequest(inHTTP(append(str(2, "POST"), header("x-ok", "1")...)), new(authv3.CheckRequest)) {
		t.Fatal("the decoder gave up on a valid minimal request: the cases below would test nothing")
	}

	for name, tc := range map[string]struct {
		b       []byte
		wantErr bool
	}{
		"unknown field":              {attrs(unknown), false},
		"request as a varint":        {attrs(protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.VarintType), 1)), false},
		"named port":                 {marshal(t, named), false},
		"pipe address":               {marshal(t, pipe), false},
		"attributes twice, merge":    {twice, false},
		"truncated":                  {marshal(t, envoyCheck(1))[:40], true},
		"invalid UTF-8 method":       {inHTTP(str(2, "PO\xffST")), true},
		"invalid UTF-8 header value": {inHTTP(header("x-bad", "\xff")), true},
		"invalid UTF-8 header name":  {inHTTP(header("x-\xff", "1")), true},
		"header entry field 3":       {inHTTP(protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), str(3, "x"))), false},
	} {
		t.Run(name, func(t *testing.T) {
			var fast authv3.CheckRequest
			if decodeCheckRequest(tc.b, &fast) {
				t.Fatal("decodeCheckRequest claimed an input it must leave to generated code")
			}
			var want authv3.CheckRequest
			wantErr := proto.Unmarshal(tc.b, &want)
			if (wantErr != nil) != tc.wantErr {
				t.Fatalf("proto.Unmarshal: %v, want error %v", wantErr, tc.wantErr)
			}
			var got authv3.CheckRequest
			err := Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(tc.b)}, &got)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("codec: %v, generated code: %v", err, wantErr)
			}
			if err == nil && !proto.Equal(&got, &want) {
				t.Fatalf("codec decoded\n%v\ngenerated code\n%v", &got, &want)
			}
		})
	}
}

// TestCodecOtherMessages: messages other than CheckRequest go through the
// standard codec both ways.
func TestCodecOtherMessages(t *testing.T) {
	in := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
		HeadersToRemove: []string{"authorization"},
	}}}
	c := Codec()
	if c.Name() != "proto" {
		t.Fatalf("Name = %q", c.Name())
	}
	data, err := c.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out authv3.CheckResponse
	if err := c.Unmarshal(data, &out); err != nil || !proto.Equal(&out, in) {
		t.Fatalf("round trip: %v, %v", &out, err)
	}
	// A CheckRequest split over several buffers, as a large one arrives.
	b := marshal(t, envoyCheck(5))
	var got authv3.CheckRequest
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b[:100]), mem.SliceBuffer(b[100:])}, &got); err != nil || !proto.Equal(&got, envoyCheck(5)) {
		t.Fatalf("split request: %v", err)
	}
}

// FuzzDecodeCheckRequest: whatever the bytes, the codec's CheckRequest and
// error are generated code's, and the decoder's own path never claims an
// input generated code refuses or reads differently.
func FuzzDecodeCheckRequest(f *testing.F) {
	f.Add(marshal(f, envoyCheck(1)))
	f.Add(marshal(f, everyField()))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x22, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var want authv3.CheckRequest
		wantErr := proto.Unmarshal(b, &want)
		var fast authv3.CheckRequest
		if decodeCheckRequest(b, &fast) {
			if wantErr != nil {
				t.Fatalf("decoder accepted what generated code refuses: %v", wantErr)
			}
			if !proto.Equal(&fast, &want) {
				t.Fatalf("decoder read\n%v\ngenerated code\n%v", &fast, &want)
			}
		}
		var got authv3.CheckRequest
		err := Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got)
		if (err != nil) != (wantErr != nil) || (err == nil && !proto.Equal(&got, &want)) {
			t.Fatalf("codec: %v %v; generated code: %v %v", &got, err, &want, wantErr)
		}
	})
}

// TestDecodeCheckRequestAllocs: an Envoy request decodes in a handful of
// allocations (generated code: 90 or so for the same request).
func TestDecodeCheckRequestAllocs(t *testing.T) {
	data := mem.BufferSlice{mem.SliceBuffer(marshal(t, envoyCheck(9)))}
	c := Codec()
	allocs := testing.AllocsPerRun(200, func() {
		var m authv3.CheckRequest
		if err := c.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
	})
	const ceiling = 8 // the string, the block, the header map and its groups; generated code 88
	if allocs > ceiling {
		t.Fatalf("%.0f allocations per CheckRequest, ceiling %d", allocs, ceiling)
	}
}

func BenchmarkDecodeCheckRequest(b *testing.B) {
	data := mem.BufferSlice{mem.SliceBuffer(marshal(b, envoyCheck(9)))}
	for _, c := range []struct {
		name  string
		codec interface {
			Unmarshal(mem.BufferSlice, any) error
		}
	}{{"generated", Codec().(checkCodec).base}, {"codec", Codec()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var m authv3.CheckRequest
				if err := c.codec.Unmarshal(data, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDecodeCheckRequestMutations is FuzzDecodeCheckRequest's property on
// 30,000 seeded random mutations of Envoy requests (a byte changed,
// removed or inserted, a bit flipped), so that every CI run covers many
// more inputs than its short fuzzing does.
func TestDecodeCheckRequestMutations(t *testing.T) {
	seeds := [][]byte{marshal(t, envoyCheck(1)), marshal(t, everyField())}
	r := rand.New(rand.NewSource(1))
	accepted := 0
	for range 30000 {
		b := append([]byte(nil), seeds[r.Intn(2)]...)
		for k := r.Intn(4) + 1; k > 0; k-- {
			switch r.Intn(4) {
			case 0:
				b[r.Intn(len(b))] = byte(r.Intn(256))
			case 1:
				j := r.Intn(len(b))
				b = append(b[:j], b[j+1:]...)
			case 2:
				j := r.Intn(len(b))
				b = append(b[:j], append([]byte{byte(r.Intn(256))}, b[j:]...)...)
			case 3:
				b[r.Intn(len(b))] ^= 1 << r.Intn(8)
			}
		}
		var fast authv3.CheckRequest
		ok := decodeCheckRequest(b, &fast)
		var want authv3.CheckRequest
		err := proto.Unmarshal(b, &want)
		if ok {
			accepted++
			if err != nil || !proto.Equal(&fast, &want) {
				t.Fatalf("decoder accepted %x, which generated code reads as %v (%v)", b, &want, err)
			}
		}
	}
	if accepted < 1000 {
		t.Fatalf("the decoder read only %d of the mutations itself", accepted) // the test would test nothing
	}
}

// nested is a Struct n lists deep.
func nested(n int) *structpb.Struct {
	v := structpb.NewStringValue("x")
	for range n {
		v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{"a": v}}
}

// TestCodecNestingLimit: metadata nested around generated code's limit
// (10,000 messages deep; each list level here is two) is refused by the
// codec exactly when generated code refuses it.
func TestCodecNestingLimit(t *testing.T) {
	refused := 0
	for n := 4990; n < 5005; n++ {
		r := envoyCheck(1)
		r.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"f": nested(n)}}
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var want, got authv3.CheckRequest
		we := proto.Unmarshal(b, &want)
		ge := Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got)
		if (we != nil) != (ge != nil) {
			t.Fatalf("%d list levels: generated code %v, codec %v", n, we, ge)
		}
		if we != nil {
			refused++
		}
	}
	if refused == 0 || refused == 15 {
		t.Fatalf("generated code refused %d of 15 depths: the range misses its limit", refused)
	}
}
