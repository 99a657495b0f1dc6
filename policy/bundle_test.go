package policy

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// bundleServer serves one OPA bundle at /bundles/authz.tar.gz and lets the
// test replace it.
type bundleServer struct {
	mu       sync.Mutex
	body     []byte
	revision string
	requests int
}

func (s *bundleServer) set(t *testing.T, revision, policy string, data map[string]any) {
	t.Helper()
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: revision},
		Data:     data,
		Modules:  []bundle.ModuleFile{{URL: "/policy.rego", Path: "/policy.rego", Raw: []byte(policy)}},
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.revision = buf.Bytes(), revision
}

func (s *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if r.URL.Path != "/bundles/authz.tar.gz" {
		http.NotFound(w, r)
		return
	}
	etag := `"` + s.revision + `"`
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(s.body)
}

func TestEngineBundle(t *testing.T) {
	ctx := testContext(t)
	srv := &bundleServer{}
	srv.set(t, "r1", toolPolicy, map[string]any{"tools": []any{"echo"}})
	hs := httptest.NewServer(srv)
	defer hs.Close()

	e, err := New(ctx, &Options{BundleURL: hs.URL + "/bundles/authz.tar.gz", BundlePolling: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() { stop(); <-done }()

	select {
	case <-e.Loaded():
	case <-ctx.Done():
		t.Fatalf("bundle never loaded: %+v", e.Status())
	}
	if st := e.Status(); st.Revision != "r1" {
		t.Errorf("revision = %q, want r1", st.Revision)
	}
	d, err := e.Eval(ctx, callTool("echo"))
	if err != nil || !d.Allowed {
		t.Fatalf("echo under r1: %+v, %v", d, err)
	}

	// A new revision replaces the policy at the next poll.
	srv.set(t, "r2", toolPolicy, map[string]any{"tools": []any{"rm"}})
	waitUntil(t, ctx, "revision r2", func() bool { return e.Status().Revision == "r2" })
	if d, _ := e.Eval(ctx, callTool("echo")); d.Allowed {
		t.Error("echo still allowed under r2")
	}

	// A broken bundle is refused; r2 keeps serving.
	srv.set(t, "r3", "package mcp.authz\n\ndecision := {\n", nil)
	waitUntil(t, ctx, "the failed download", func() bool { return e.Status().Failures > 0 })
	if st := e.Status(); st.Revision != "r2" || st.LastError == "" {
		t.Errorf("status after broken bundle = %+v", st)
	}
	if d, _ := e.Eval(ctx, callTool("rm")); !d.Allowed {
		t.Error("the broken bundle replaced r2")
	}

	// The bundle server goes away: r2 keeps serving, the failures show in
	// the status; when a server answers at the same address again, its
	// bundle loads with no restart.
	addr := hs.Listener.Addr().String()
	hs.Close()
	before := e.Status().Failures
	waitUntil(t, ctx, "a failed poll of the gone server", func() bool { return e.Status().Failures > before })
	if d, _ := e.Eval(ctx, callTool("rm")); !d.Allowed || e.Status().Revision != "r2" {
		t.Errorf("with the server gone: %+v, status %+v", d, e.Status())
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv.set(t, "r4", toolPolicy, map[string]any{"tools": []any{"echo"}})
	back := httptest.NewUnstartedServer(srv)
	back.Listener.Close()
	back.Listener = lis
	back.Start()
	defer back.Close()
	waitUntil(t, ctx, "revision r4 from the server that came back", func() bool { return e.Status().Revision == "r4" })
	if d, _ := e.Eval(ctx, callTool("echo")); !d.Allowed {
		t.Error("echo not allowed under r4")
	}
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
