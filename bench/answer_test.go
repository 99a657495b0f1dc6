package bench

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestAnswerCodecReadsWhatProtobufDecodes checks that the generator's
// wire reading finds the numbers a full decode finds, in answers as rich
// as Portcullis's and as bare as the null server's.
func TestAnswerCodecReadsWhatProtobufDecodes(t *testing.T) {
	meta, _ := structpb.NewStruct(map[string]any{"subject": "alice", "scopes": []any{"mcp:tools"}})
	checks := []*authv3.CheckResponse{
		{},
		{Status: &status.Status{}},
		{Status: &status.Status{Code: int32(codes.OK)}, DynamicMetadata: meta, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-portcullis-subject", Value: "alice"}}},
		}}},
		{Status: &status.Status{Code: int32(codes.PermissionDenied), Message: "denied"}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "www-authenticate", Value: `Bearer error="insufficient_scope"`}}},
			Body:    `{"error":"forbidden"}`,
		}}},
		{Status: &status.Status{Code: int32(codes.Unauthenticated)}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{}}},
	}
	for _, want := range checks {
		b, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var got checkAnswer
		if err := (answerCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil {
			t.Fatalf("%v: %v", want, err)
		}
		d := want.GetDeniedResponse()
		if got.code != want.GetStatus().GetCode() || got.denied != (d.GetStatus() != nil) || got.deniedHTTP != int32(d.GetStatus().GetCode()) {
			t.Errorf("%v: read %+v", want, got)
		}
	}
	for _, want := range []*rlsv3.RateLimitResponse{
		{},
		{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OVER_LIMIT}}},
		{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OK, LimitRemaining: 7}}},
	} {
		b, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var got rateLimitAnswer
		if err := (answerCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil || got.overall != int32(want.GetOverallCode()) {
			t.Errorf("%v: read %+v, %v", want, got, err)
		}
	}
	// A truncated answer is an error, not a zero (which would read as OK).
	b, _ := proto.Marshal(checks[3])
	var a checkAnswer
	if err := (answerCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b[:len(b)-3])}, &a); err == nil {
		t.Errorf("truncated answer read as %+v", a)
	}
}

// BenchmarkAnswer decodes answers as the generator used to (protobuf-go,
// in full) and reads them as it does now (the wire), for an answer shaped
// like Portcullis's allow of authz-rbac (identity headers, the credential
// header removed, dynamic metadata) and for the null server's.
func BenchmarkAnswer(b *testing.B) {
	meta, err := structpb.NewStruct(map[string]any{
		"subject": "key:analyst", "client_id": "", "provider": "keys", "mcp_method": "tools/call",
		"mcp_name": "fs.read", "decision_id": "01JD5Q3ZP4K7M2XG8W9R6T1YHN", "cost": 1,
	})
	if err != nil {
		b.Fatal(err)
	}
	header := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
	}
	portcullis := &authv3.CheckResponse{Status: &status.Status{}, DynamicMetadata: meta, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{
			header("x-portcullis-subject", "key:analyst"), header("x-portcullis-roles", "analyst"),
			header("x-portcullis-scopes", "mcp:tools"), header("x-portcullis-provider", "keys"),
		},
		HeadersToRemove: []string{"x-api-key"},
	}}}
	null := &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}
	for _, tc := range []struct {
		name string
		resp *authv3.CheckResponse
	}{{"portcullis", portcullis}, {"null", null}} {
		wire, err := proto.Marshal(tc.resp)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var m authv3.CheckResponse
				if err := proto.Unmarshal(wire, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/wire", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var a checkAnswer
				if err := a.readWire(wire); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
