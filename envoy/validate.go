package envoy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	// The extensions the shipped configuration uses. Importing them
	// registers their types, so that protojson resolves the type URLs of
	// typed_config and anypb.UnmarshalNew unpacks them. A typed_config of
	// any other type is refused as unresolvable.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/mcp/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// LoadBootstrap reads the Envoy bootstrap at path (YAML or JSON) and returns
// it decoded and validated as [ParseBootstrap] does.
func LoadBootstrap(path string) (*bootstrapv3.Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := ParseBootstrap(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// ParseBootstrap decodes an Envoy v3 bootstrap (YAML or JSON) strictly, as
// [DecodeYAML], and validates it, as [Validate].
func ParseBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	b := &bootstrapv3.Bootstrap{}
	if err := DecodeYAML(data, b); err != nil {
		return nil, err
	}
	if err := Validate(b); err != nil {
		return nil, err
	}
	return b, nil
}

// DecodeYAML decodes YAML (or JSON) into m through protojson, the way
// Envoy reads its YAML configuration: field names in proto or JSON form,
// enums by name, durations as "0.250s", typed_config as an object with an
// "@type". Unlike Envoy it rejects unknown fields always, and a type URL
// whose type is not linked into this program (see the imports of this
// package) is an error.
func DecodeYAML(data []byte, m proto.Message) error {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("parse YAML: %w", err)
	}
	return DecodeValue(v, m)
}

// DecodeValue decodes a value decoded from YAML or JSON (maps, slices and
// scalars) into m, as [DecodeYAML]. It is how the Envoy configuration
// embedded in other documents, such as an Istio EnvoyFilter's patch
// values, is read.
func DecodeValue(v any, m proto.Message) error {
	v, err := jsonValue(v)
	if err != nil {
		return err
	}
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, m); err != nil {
		return fmt.Errorf("decode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// jsonValue converts YAML's map[any]any (non-string keys) into values
// encoding/json accepts, refusing keys that are not strings.
func jsonValue(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			v[k] = c
		}
		return v, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			s, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("map key %v is not a string", k)
			}
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[s] = c
		}
		return out, nil
	case []any:
		for i, e := range v {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			v[i] = c
		}
		return v, nil
	default:
		return v, nil
	}
}

// validator is what go-control-plane's generated protoc-gen-validate code
// adds to every message.
type validator interface{ ValidateAll() error }

// Validate runs the protoc-gen-validate rules of m (ValidateAll) and of
// every message packed in an Any anywhere inside it (typed_config,
// typed_extension_protocol_options, ...), which ValidateAll alone does not
// look into. Every problem is reported, joined.
func Validate(m proto.Message) error {
	var errs []error
	validate(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().Name()), &errs)
	return errors.Join(errs...)
}

func validate(m protoreflect.Message, path string, errs *[]error) {
	if v, ok := m.Interface().(validator); ok {
		if err := v.ValidateAll(); err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	walk(m, path, errs)
}

// walk finds the Any messages under m and validates what they hold.
func walk(m protoreflect.Message, path string, errs *[]error) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", path, err))
			return
		}
		validate(inner.ProtoReflect(), path+"("+string(inner.ProtoReflect().Descriptor().FullName())+")", errs)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), errs)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
				walk(e.Message(), fmt.Sprintf("%s[%q]", p, k.String()), errs)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walk(v.Message(), p, errs)
		}
		return true
	})
}
