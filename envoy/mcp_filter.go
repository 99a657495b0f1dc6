package envoy

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"

	mcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/mcp/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// jsonrpcResponseMethod is the method the MCP filter records for a
// JSON-RPC response.
const jsonrpcResponseMethod = "__jsonrpc_response"

// mcpFilter parses a JSON-RPC POST body and records the call in dynamic
// metadata (namespace envoy.filters.http.mcp) as Envoy's MCP filter does:
// method ("__jsonrpc_response" for a response), id, and the params that
// name the call's target by default (params.name for tools/call and
// prompts/get, params.uri for resources/*, params.ref for
// completion/complete, params.protocolVersion for initialize). A body
// over max_request_body_size gets is_exceeding_limit instead (and the
// method and id when the prefix has them). In PASS_THROUGH mode other
// requests go on untouched; in REJECT_NO_MCP mode they get 400.
func (st *stream) mcpFilter(c *mcpv3.Mcp) bool {
	reject := c.GetTrafficMode() == mcpv3.Mcp_REJECT_NO_MCP
	if st.r.Method != http.MethodPost || !isJSON(st.r.Header.Get("Content-Type")) {
		if reject {
			st.localReply(http.StatusBadRequest, nil, "")
			return false
		}
		return true
	}
	limit := defaultMCPBodyLimit
	if m := c.GetMaxRequestBodySize(); m != nil {
		limit = int(m.GetValue())
		if limit == 0 {
			limit = maxMCPBodyLimit
		}
	}
	complete := st.readBody(limit)
	if st.bodyErr != nil {
		st.localReply(http.StatusBadRequest, nil, "")
		return false
	}
	var fields map[string]any
	if complete {
		fields = mcpMetadata(st.body)
	} else {
		if reject {
			st.localReply(http.StatusBadRequest, nil, "")
			return false
		}
		fields = map[string]any{"is_exceeding_limit": true}
		for k, v := range prefixFields(st.body[:limit]) {
			fields[k] = v
		}
	}
	if fields == nil {
		if reject {
			st.localReply(http.StatusBadRequest, nil, "")
			return false
		}
		return true
	}
	md, err := structpb.NewStruct(fields)
	if err != nil {
		return true
	}
	st.mergeMetadata(filterMCP, md)
	return true
}

// mcpMetadata is the metadata of a complete JSON-RPC body, nil when it is
// not a JSON-RPC 2.0 message. Duplicate keys: the last wins, as in the
// filter's default parser.
func mcpMetadata(body []byte) map[string]any {
	var msg map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&msg); err != nil || dec.More() || msg["jsonrpc"] != "2.0" {
		return nil
	}
	out := map[string]any{}
	if id, ok := msg["id"]; ok {
		switch id.(type) {
		case float64, string:
			out["id"] = id
		default:
			return nil
		}
	}
	method, ok := msg["method"].(string)
	if !ok || method == "" {
		_, hasResult := msg["result"]
		_, hasError := msg["error"]
		if _, hasID := out["id"]; !hasID || hasResult == hasError {
			return nil
		}
		out["method"] = jsonrpcResponseMethod
		return out
	}
	out["method"] = method
	params, _ := msg["params"].(map[string]any)
	keep := map[string]any{}
	for _, k := range targetParams(method) {
		if v, ok := params[k]; ok {
			keep[k] = v
		}
	}
	if len(keep) > 0 {
		out["params"] = keep
	}
	return out
}

// targetParams are the params the filter extracts by default for a
// method.
func targetParams(method string) []string {
	switch method {
	case "tools/call", "prompts/get":
		return []string{"name"}
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return []string{"uri"}
	case "completion/complete":
		return []string{"ref"}
	case "initialize":
		return []string{"protocolVersion"}
	}
	return nil
}

// prefixFields reads the top-level "method" and "id" of a truncated JSON
// object, as far as the prefix goes.
func prefixFields(prefix []byte) map[string]any {
	dec := json.NewDecoder(bytes.NewReader(prefix))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	out := map[string]any{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return out
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return out
		}
		switch k {
		case "method":
			if s, ok := v.(string); ok && s != "" {
				out["method"] = s
			}
		case "id":
			switch v.(type) {
			case float64, string:
				out["id"] = v
			}
		}
	}
	return out
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}
