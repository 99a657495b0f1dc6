package extauthz

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-mcp/portcullis/policy"
)

// wireMetadata is resp's dynamic_metadata as Envoy decodes it: the field
// is written in wire form (metadata.go), so it exists only after a trip
// through proto.Marshal.
func wireMetadata(t testing.TB, resp *authv3.CheckResponse) *structpb.Struct {
	t.Helper()
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var got authv3.CheckResponse
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if len(got.ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("unknown fields left after decoding: %x", got.ProtoReflect().GetUnknown())
	}
	return got.GetDynamicMetadata()
}

// The hand-written encoding decodes to what structpb builds from the same
// map, for every kind of value a policy can return.
func TestDynamicMetadataMatchesStructpb(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		policyMeta := map[string]any{}
		for j := range rng.IntN(5) {
			policyMeta[fmt.Sprintf("k%d", j)] = randomValue(rng, 3)
		}
		if i%7 == 0 {
			policyMeta[MetaCost] = "a policy cannot override cost"
			policyMeta[MetaSubject] = "nor the subject"
		}
		if i%11 == 0 {
			policyMeta[MetaClientID] = "kept: the caller has no client id"
		}
		r := &request{in: &policy.Input{}}
		r.in.Identity = policy.Identity{Subject: "alice", Provider: "jwt"}
		if i%2 == 0 {
			r.in.MCP = &policy.MCP{Method: "tools/call", Name: "fs.read"}
		}
		d := &policy.Decision{DynamicMetadata: policyMeta, Cost: int64(i % 4)}

		want := map[string]any{}
		for k, v := range policyMeta {
			want[k] = structValue(v)
		}
		want[MetaSubject], want[MetaProvider] = "alice", "jwt"
		if r.in.MCP != nil {
			want[MetaMCPMethod], want[MetaMCPName] = "tools/call", "fs.read"
		}
		want[MetaDecisionID], want[MetaCost] = "id-1", float64(i%4)
		wantStruct, err := structpb.NewStruct(want)
		if err != nil {
			t.Fatal(err)
		}

		resp := &authv3.CheckResponse{}
		setDynamicMetadata(resp, r, d, "id-1")
		if diff := cmp.Diff(wantStruct, wireMetadata(t, resp), protocmp.Transform()); diff != "" {
			t.Fatalf("case %d (-structpb +ours):\n%s", i, diff)
		}
	}
}

func randomValue(rng *rand.Rand, depth int) any {
	kinds := 6
	if depth == 0 {
		kinds = 4
	}
	switch rng.IntN(kinds + 1) {
	case 0:
		return nil
	case 1:
		return rng.IntN(2) == 0
	case 2:
		return []any{json.Number("3"), json.Number("-0.5e3"), math.Inf(1), 1e300, math.Copysign(0, -1), 42.0}[rng.IntN(6)]
	case 3:
		return []string{"", "plain", "ünïcödé ✓", "quote\"and\\slash", "\x00\x1f", string(make([]byte, 200))}[rng.IntN(6)]
	case 4:
		m := map[string]any{}
		for j := range rng.IntN(4) {
			m[fmt.Sprintf("n%d", j)] = randomValue(rng, depth-1)
		}
		return m
	case 5:
		l := make([]any, rng.IntN(4))
		for j := range l {
			l[j] = randomValue(rng, depth-1)
		}
		return l
	default:
		return struct{}{} // not JSON-like: becomes null, as structValue makes it
	}
}

// A string that is not UTF-8 cannot be in a Struct: the metadata falls
// back to the decision id alone, as structpb's error did.
func TestDynamicMetadataInvalidUTF8(t *testing.T) {
	for name, d := range map[string]*policy.Decision{
		"value":        {DynamicMetadata: map[string]any{"bad": "\xff"}},
		"key":          {DynamicMetadata: map[string]any{"\xfe": "v"}},
		"nested value": {DynamicMetadata: map[string]any{"l": []any{map[string]any{"x": "\xc0"}}}},
	} {
		r := &request{in: &policy.Input{}}
		r.in.Identity = policy.Identity{Subject: "alice"}
		resp := &authv3.CheckResponse{}
		setDynamicMetadata(resp, r, d, "id-2")
		got := wireMetadata(t, resp).AsMap()
		if len(got) != 1 || got[MetaDecisionID] != "id-2" {
			t.Errorf("%s: %v, want the decision id alone", name, got)
		}
	}
}

func BenchmarkDynamicMetadata(b *testing.B) {
	r := &request{in: &policy.Input{}}
	r.in.Identity = policy.Identity{Subject: "user-17", Provider: "keys"}
	r.in.MCP = &policy.MCP{Method: "tools/call", Name: "fs.read"}
	d := &policy.Decision{Cost: 1}
	b.Run("wire", func(b *testing.B) {
		for b.Loop() {
			resp := &authv3.CheckResponse{}
			setDynamicMetadata(resp, r, d, "0123456789abcdef0123456789abcdef")
			_, _ = proto.Marshal(resp)
		}
	})
	b.Run("structpb", func(b *testing.B) {
		for b.Loop() {
			st, _ := structpb.NewStruct(map[string]any{MetaSubject: "user-17", MetaProvider: "keys", MetaMCPMethod: "tools/call",
				MetaMCPName: "fs.read", MetaDecisionID: "0123456789abcdef0123456789abcdef", MetaCost: 1.0})
			_, _ = proto.Marshal(&authv3.CheckResponse{DynamicMetadata: st})
		}
	})
}
