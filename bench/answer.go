package bench

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// answerCodec is the generator's gRPC codec: requests go out as the bytes
// they were marshalled to once ([wireRequest]), answers are not decoded
// into messages. The generator
// judges an answer by one or two numbers, and on two shared cores a full
// decode of a rich answer (Portcullis's headers, dynamic metadata and
// per-descriptor statuses; the null server sends none) would be generator
// work charged to the server that sent it. Unmarshal reads those numbers
// from the wire and skips the rest, so every answer costs the generator the
// bytes it walks.
type answerCodec struct{}

func (answerCodec) Name() string { return "proto" }

// wireRequest is a request marshalled in advance.
type wireRequest []byte

func (answerCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(wireRequest)
	if !ok {
		return nil, fmt.Errorf("answerCodec: cannot marshal %T", v)
	}
	// SliceBuffer's Free does nothing: the bytes are sent, not reused.
	return mem.BufferSlice{mem.SliceBuffer(m)}, nil
}

func (answerCodec) Unmarshal(data mem.BufferSlice, v any) error {
	a, ok := v.(wireAnswer)
	if !ok {
		return fmt.Errorf("answerCodec: cannot unmarshal into %T", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return a.readWire(buf.ReadOnlyData())
}

var _ encoding.CodecV2 = answerCodec{}

// A wireAnswer reads the fields it needs from a marshalled message.
type wireAnswer interface {
	readWire(b []byte) error
}

// checkAnswer is what the generator reads of an envoy.service.auth.v3
// CheckResponse: status.code (field 1, google.rpc.Status field 1) and
// denied_response.status.code (field 2, DeniedHttpResponse field 1,
// envoy.type.v3.HttpStatus field 1).
type checkAnswer struct {
	code       int32 // gRPC status code; 0 is OK
	deniedHTTP int32 // HTTP status of a denial, 0 when there is none
	denied     bool  // denied_response present with a status
}

func (a *checkAnswer) readWire(b []byte) error {
	*a = checkAnswer{}
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			code, err := varintField(v, 1)
			a.code = int32(code)
			return err
		case num == 2 && typ == protowire.BytesType:
			return eachField(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if num != 1 || typ != protowire.BytesType {
					return nil
				}
				code, err := varintField(v, 1)
				a.deniedHTTP, a.denied = int32(code), true
				return err
			})
		}
		return nil
	})
}

// rateLimitAnswer is what the generator reads of an
// envoy.service.ratelimit.v3 RateLimitResponse: overall_code (field 1).
type rateLimitAnswer struct {
	overall int32
}

func (a *rateLimitAnswer) readWire(b []byte) error {
	code, err := varintField(b, 1)
	a.overall = int32(code)
	return err
}

// varintField returns the last value of varint field num in b (proto3's
// last-one-wins), 0 when absent.
func varintField(b []byte, num protowire.Number) (uint64, error) {
	var out uint64
	err := eachField(b, func(n protowire.Number, typ protowire.Type, _ []byte, v uint64) error {
		if n == num && typ == protowire.VarintType {
			out = v
		}
		return nil
	})
	return out, err
}

var errBadWire = errors.New("malformed protobuf answer")

// eachField walks the fields of a marshalled message, giving f the payload
// of length-delimited fields and the value of varints.
func eachField(b []byte, f func(num protowire.Number, typ protowire.Type, payload []byte, varint uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadWire
		}
		b = b[n:]
		var payload []byte
		var varint uint64
		switch typ {
		case protowire.VarintType:
			varint, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			payload, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errBadWire
		}
		b = b[n:]
		if err := f(num, typ, payload, varint); err != nil {
			return err
		}
	}
	return nil
}
