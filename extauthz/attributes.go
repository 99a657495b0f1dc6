package extauthz

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// attributesMap renders the CheckRequest attributes as protojson would
// (lowerCamel names, 64-bit integers as strings, bytes in base64, enums by
// name, Timestamp in RFC 3339, Struct as plain JSON) decoded with
// UseNumber — the form opa-envoy-plugin gives its policies — but walks the
// message directly instead of encoding and decoding JSON. Well-known types
// other than Timestamp, Struct, Value and ListValue are rare here and go
// through protojson.
func attributesMap(attrs *authv3.AttributeContext) (map[string]any, error) {
	if attrs == nil {
		return map[string]any{}, nil
	}
	return messageMap(attrs.ProtoReflect())
}

func messageMap(m protoreflect.Message) (map[string]any, error) {
	out := make(map[string]any, 8)
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		var val any
		switch {
		case fd.IsList():
			l := v.List()
			a := make([]any, l.Len())
			for i := range l.Len() {
				if a[i], err = singular(fd, l.Get(i)); err != nil {
					return false
				}
			}
			val = a
		case fd.IsMap():
			mv := v.Map()
			mm := make(map[string]any, mv.Len())
			mv.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				var e any
				if e, err = singular(fd.MapValue(), v); err != nil {
					return false
				}
				mm[k.String()] = e
				return true
			})
			val = mm
		default:
			val, err = singular(fd, v)
		}
		if err != nil {
			return false
		}
		out[fd.JSONName()] = val
		return true
	})
	return out, err
}

func singular(fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return v.Bool(), nil
	case protoreflect.StringKind:
		return v.String(), nil
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes()), nil
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return nil, nil
		}
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name()), nil
		}
		return json.Number(strconv.FormatInt(int64(v.Enum()), 10)), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return json.Number(strconv.FormatInt(v.Int(), 10)), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return json.Number(strconv.FormatUint(v.Uint(), 10)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.FormatInt(v.Int(), 10), nil // protojson quotes 64-bit integers
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.FormatUint(v.Uint(), 10), nil
	case protoreflect.FloatKind:
		return floatValue(v.Float(), 32), nil
	case protoreflect.DoubleKind:
		return floatValue(v.Float(), 64), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return messageValue(v.Message())
	}
	return nil, nil
}

func floatValue(f float64, bits int) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, bits))
}

// messageValue renders a message field, with the JSON mappings of the
// well-known types.
func messageValue(m protoreflect.Message) (any, error) {
	d := m.Descriptor()
	switch d.FullName() {
	case "google.protobuf.Timestamp":
		fs := d.Fields()
		secs, nanos := m.Get(fs.ByName("seconds")).Int(), m.Get(fs.ByName("nanos")).Int()
		return formatTimestamp(secs, nanos), nil
	case "google.protobuf.Struct":
		return messageMapField(m, "fields")
	case "google.protobuf.ListValue":
		fd := d.Fields().ByName("values")
		l := m.Get(fd).List()
		a := make([]any, l.Len())
		for i := range l.Len() {
			var err error
			if a[i], err = messageValue(l.Get(i).Message()); err != nil {
				return nil, err
			}
		}
		return a, nil
	case "google.protobuf.Value":
		od := m.WhichOneof(d.Oneofs().ByName("kind"))
		if od == nil {
			return nil, nil
		}
		return singular(od, m.Get(od))
	}
	if d.ParentFile().Package() == "google.protobuf" {
		return viaProtojson(m)
	}
	return messageMap(m)
}

// messageMapField renders the map field name of m (Struct.fields).
func messageMapField(m protoreflect.Message, name protoreflect.Name) (map[string]any, error) {
	fd := m.Descriptor().Fields().ByName(name)
	mv := m.Get(fd).Map()
	out := make(map[string]any, mv.Len())
	var err error
	mv.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		var e any
		if e, err = messageValue(v.Message()); err != nil {
			return false
		}
		out[k.String()] = e
		return true
	})
	return out, err
}

// formatTimestamp formats like protojson: RFC 3339 in UTC with 0, 3, 6 or 9
// fractional digits.
func formatTimestamp(secs, nanos int64) string {
	t := time.Unix(secs, nanos).UTC()
	s := t.Format("2006-01-02T15:04:05.000000000")
	s = s[:len(s)-10] // drop the fraction, added back below
	if nanos != 0 {
		frac := strconv.FormatInt(nanos+1e9, 10)[1:]
		switch {
		case nanos%1e6 == 0:
			frac = frac[:3]
		case nanos%1e3 == 0:
			frac = frac[:6]
		}
		s += "." + frac
	}
	return s + "Z"
}

func viaProtojson(m protoreflect.Message) (any, error) {
	b, err := protojson.Marshal(m.Interface())
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err = dec.Decode(&v)
	return v, err
}

// attributeAt is the value at path (lowerCamel keys, as in attributesMap)
// in the attributes, without converting the rest: what
// attributesMap(attrs) holds there, or false. It follows message fields by
// JSON name and map fields by key; at a well-known type it converts that
// value and goes on through the result.
func attributeAt(attrs *authv3.AttributeContext, path []string) (any, bool) {
	if attrs == nil {
		return nil, false
	}
	if v, ok, handled := commonAttribute(attrs, path); handled {
		return v, ok
	}
	m := attrs.ProtoReflect()
	for i := 0; i < len(path); i++ {
		if m.Descriptor().ParentFile().Package() == "google.protobuf" {
			v, err := messageValue(m)
			if err != nil {
				return nil, false
			}
			return jsonValueAt(v, path[i:])
		}
		fd := m.Descriptor().Fields().ByJSONName(path[i])
		if fd == nil || !m.Has(fd) {
			return nil, false
		}
		v := m.Get(fd)
		switch {
		case fd.IsList():
			if i < len(path)-1 {
				return nil, false // a list has no keys
			}
			out, err := messageMap(m)
			if err != nil {
				return nil, false
			}
			return out[path[i]], true
		case fd.IsMap():
			if i == len(path)-1 {
				out, err := messageMap(m)
				if err != nil {
					return nil, false
				}
				return out[path[i]], true
			}
			e := v.Map().Get(protoreflect.ValueOfString(path[i+1]).MapKey())
			if !e.IsValid() {
				return nil, false
			}
			i++
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				if i < len(path)-1 {
					return nil, false
				}
				s, err := singular(fd.MapValue(), e)
				return s, err == nil
			}
			m = e.Message()
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			m = v.Message()
		default:
			if i < len(path)-1 {
				return nil, false
			}
			s, err := singular(fd, v)
			return s, err == nil
		}
	}
	v, err := messageValue(m)
	return v, err == nil
}

// jsonValueAt follows object keys through a JSON-like value.
func jsonValueAt(v any, path []string) (any, bool) {
	for _, k := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// commonAttribute reads the attributes Envoy-style policies read most —
// the request's method, path, host, scheme, protocol and headers, the
// peers' addresses and principals — through the generated getters:
// attributeAt's reflective walk was most of a cached decision's key. It
// answers as attributeAt does (a proto3 string is absent when empty, a map
// entry present even when empty); handled is false for every other path.
func commonAttribute(a *authv3.AttributeContext, path []string) (v any, ok, handled bool) {
	str := func(s string) (any, bool, bool) {
		if s == "" {
			return nil, false, true
		}
		return s, true, true
	}
	switch {
	case len(path) >= 3 && path[0] == "request" && path[1] == "http":
		h := a.GetRequest().GetHttp()
		switch {
		case len(path) == 3 && path[2] == "method":
			return str(h.GetMethod())
		case len(path) == 3 && path[2] == "path":
			return str(h.GetPath())
		case len(path) == 3 && path[2] == "host":
			return str(h.GetHost())
		case len(path) == 3 && path[2] == "scheme":
			return str(h.GetScheme())
		case len(path) == 3 && path[2] == "protocol":
			return str(h.GetProtocol())
		case len(path) == 4 && path[2] == "headers":
			s, ok := h.GetHeaders()[path[3]]
			if !ok {
				return nil, false, true
			}
			return s, true, true
		}
	case len(path) >= 2 && (path[0] == "source" || path[0] == "destination"):
		p := a.GetSource()
		if path[0] == "destination" {
			p = a.GetDestination()
		}
		switch {
		case len(path) == 2 && path[1] == "principal":
			return str(p.GetPrincipal())
		case len(path) == 4 && path[1] == "address" && path[2] == "socketAddress" && path[3] == "address":
			return str(p.GetAddress().GetSocketAddress().GetAddress())
		}
	}
	return nil, false, false
}
