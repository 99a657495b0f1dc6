package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultProtocolVersion is the MCP version the MCP target initializes
// with: the latest one both the SDK's stateless servers and older clients
// speak with initialize.
const DefaultProtocolVersion = "2025-11-25"

// ToolCall is the params of one tools/call: a line of an MCP scenario's
// request file.
type ToolCall struct {
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments,omitempty"`
}

// ReadToolCalls reads tool calls from files in the formats [ReadMessages]
// accepts (an object, an array, JSON Lines).
func ReadToolCalls(files ...string) ([]ToolCall, error) {
	var out []ToolCall
	for _, f := range files {
		docs, err := readJSONDocuments(f)
		if err != nil {
			return nil, err
		}
		for i, doc := range docs {
			var c ToolCall
			dec := json.NewDecoder(bytes.NewReader(doc))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&c); err != nil || c.Name == "" {
				return nil, fmt.Errorf("%s: call %d: want {\"name\": ..., \"arguments\": {...}} (%v)", f, i+1, err)
			}
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no tool calls in %v", files)
	}
	return out, nil
}

// MCPOptions configures an [MCPTarget].
type MCPOptions struct {
	// URL is the streamable HTTP endpoint, such as http://127.0.0.1:8080/mcp.
	URL string
	// Calls are cycled across all workers.
	Calls []ToolCall
	// Headers returns extra headers for one worker's requests of one MCP
	// method and name (the name is empty but for calls), such as an
	// x-portcullis-identity token signed for that call. It is asked once
	// per worker, method and name; nil adds none.
	Headers func(worker int, method, name string) (http.Header, error)
	// ProtocolVersion is sent in initialize; default DefaultProtocolVersion.
	ProtocolVersion string
	// Client sends the requests; nil means one with keep-alive connections
	// for every worker.
	Client *http.Client
}

// MCPTarget calls tools on any MCP server over streamable HTTP. Each worker
// is one client session: it initializes once (untimed), then sends
// tools/call requests one at a time, reading the answer whether it comes
// as JSON or as an SSE stream.
type MCPTarget struct {
	opts   MCPOptions
	params []json.RawMessage
	next   atomic.Uint64
}

// NewMCPTarget returns a target for opts.
func NewMCPTarget(opts MCPOptions) (*MCPTarget, error) {
	if opts.URL == "" || len(opts.Calls) == 0 {
		return nil, errors.New("MCP target needs a URL and tool calls")
	}
	if opts.ProtocolVersion == "" {
		opts.ProtocolVersion = DefaultProtocolVersion
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: &http.Transport{
			MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute,
		}}
	}
	t := &MCPTarget{opts: opts}
	for _, c := range opts.Calls {
		// Marshalled once: the generator should spend its CPU on sending.
		p, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		t.params = append(t.params, p)
	}
	return t, nil
}

// NewCaller initializes a session for one worker.
func (t *MCPTarget) NewCaller(ctx context.Context, worker int) (Caller, error) {
	s := &mcpSession{t: t, worker: worker, headers: map[[2]string]http.Header{}}
	init := fmt.Sprintf(`{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":"portcullis-bench","version":"0"}}`, t.opts.ProtocolVersion)
	resp, err := s.post(ctx, "initialize", "", []byte(init), true)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	var res struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(resp.result, &res); err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	s.version = res.ProtocolVersion
	s.session = resp.sessionID
	if _, err := s.post(ctx, "notifications/initialized", "", nil, false); err != nil {
		return nil, fmt.Errorf("notifications/initialized: %w", err)
	}
	return s, nil
}

// mcpSession is one worker's client session.
type mcpSession struct {
	t       *MCPTarget
	worker  int
	id      int64
	version string
	session string
	headers map[[2]string]http.Header
}

// Call sends the next tools/call. The outcome is "OK", or "tool_error"
// when the tool answered with isError; an HTTP or JSON-RPC error is an
// error.
func (s *mcpSession) Call(ctx context.Context) (string, error) {
	i := (s.t.next.Add(1) - 1) % uint64(len(s.t.params))
	resp, err := s.post(ctx, "tools/call", s.t.opts.Calls[i].Name, s.t.params[i], true)
	if err != nil {
		return "", err
	}
	var res struct {
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal(resp.result, &res); err != nil {
		return "", fmt.Errorf("tools/call result: %w", err)
	}
	if res.IsError {
		return "tool_error", nil
	}
	return "OK", nil
}

type rpcResponse struct {
	result    json.RawMessage
	sessionID string
}

// post sends one JSON-RPC message; a request (wantReply) waits for its
// response, a notification for the 202.
func (s *mcpSession) post(ctx context.Context, method, name string, params []byte, wantReply bool) (*rpcResponse, error) {
	var body bytes.Buffer
	body.WriteString(`{"jsonrpc":"2.0",`)
	if wantReply {
		s.id++
		body.WriteString(`"id":` + strconv.FormatInt(s.id, 10) + `,`)
	}
	body.WriteString(`"method":` + strconv.Quote(method))
	if params != nil {
		body.WriteString(`,"params":`)
		body.Write(params)
	}
	body.WriteString(`}`)

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.t.opts.URL, &body)
	if err != nil {
		return nil, err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	if s.version != "" {
		h.Set("Mcp-Protocol-Version", s.version)
	}
	if s.session != "" {
		h.Set("Mcp-Session-Id", s.session)
	}
	extra, err := s.extraHeaders(method, name)
	if err != nil {
		return nil, err
	}
	for k, vs := range extra {
		h[k] = vs
	}
	resp, err := s.t.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return nil, fmt.Errorf("%s: HTTP %d: %s", method, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if !wantReply {
		_, _ = io.Copy(io.Discard, resp.Body)
		return &rpcResponse{}, nil
	}
	msg, err := readReply(resp, s.id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	return &rpcResponse{result: msg, sessionID: resp.Header.Get("Mcp-Session-Id")}, nil
}

func (s *mcpSession) extraHeaders(method, name string) (http.Header, error) {
	if s.t.opts.Headers == nil {
		return nil, nil
	}
	k := [2]string{method, name}
	if h, ok := s.headers[k]; ok {
		return h, nil
	}
	h, err := s.t.opts.Headers(s.worker, method, name)
	if err != nil {
		return nil, err
	}
	s.headers[k] = h
	return h, nil
}

// maxReply bounds a response body the generator reads.
const maxReply = 4 << 20

// readReply returns the result of the JSON-RPC response with id, from a
// JSON body or from the events of an SSE stream (where the server may send
// notifications first).
func readReply(resp *http.Response, id int64) (json.RawMessage, error) {
	body := io.LimitReader(resp.Body, maxReply)
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct != "text/event-stream" {
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		return replyResult(b, id)
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxReply)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 { // the end of an event
			if len(data) > 0 {
				if res, err := replyResult(data, id); !errors.Is(err, errNotOurReply) {
					return res, err
				}
			}
			data = data[:0]
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(v, []byte(" "))...)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(data) > 0 { // a last event without its blank line
		return replyResult(data, id)
	}
	return nil, errors.New("stream ended without a response")
}

var errNotOurReply = errors.New("not the response to this request")

// replyResult returns the result of msg when it is the response to id.
func replyResult(msg []byte, id int64) (json.RawMessage, error) {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	if string(m.ID) != strconv.FormatInt(id, 10) {
		return nil, errNotOurReply
	}
	if m.Error != nil {
		return nil, fmt.Errorf("JSON-RPC error %d: %s", m.Error.Code, m.Error.Message)
	}
	return m.Result, nil
}
