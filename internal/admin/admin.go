// Package admin serves the admin HTTP endpoints of portcullis serve:
// /healthz (the process is up), /readyz (it can answer: a policy is loaded,
// keys are fetched; details as JSON), /metrics, /debug/pprof/ and the
// routes main adds (Protected Resource Metadata, the identity JWKS). They
// are never served on the data-plane port.
package admin

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
)

// Check reports whether one component is ready, with details for /readyz.
type Check func() (ready bool, details any)

// Options configure the admin handler.
type Options struct {
	// Checks are the readiness checks, by component name.
	Checks map[string]Check
	// Metrics serves /metrics; nil answers 404.
	Metrics http.Handler
	// Routes are more handlers by ServeMux pattern ("GET /x").
	Routes map[string]http.Handler
}

// JSON is a handler that serves a fixed JSON document.
func JSON(doc []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(doc)
	})
}

// Handler returns the admin HTTP handler.
func Handler(opts Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		type component struct {
			Ready   bool `json:"ready"`
			Details any  `json:"details,omitempty"`
		}
		out := struct {
			Ready      bool                 `json:"ready"`
			Components map[string]component `json:"components"`
		}{Ready: true, Components: map[string]component{}}
		for name, check := range opts.Checks {
			ok, details := check()
			out.Components[name] = component{ok, details}
			out.Ready = out.Ready && ok
		}
		w.Header().Set("Content-Type", "application/json")
		if !out.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	})
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	for pattern, h := range opts.Routes {
		mux.Handle(pattern, h)
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
