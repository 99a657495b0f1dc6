package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// maxBundleBytes bounds the size of a downloaded bundle.
const maxBundleBytes = 64 << 20

// runBundle polls the bundle URL with OPA's downloader (ETag caching,
// backoff on errors) and installs each new bundle, until ctx ends.
func (e *Engine) runBundle(ctx context.Context) error {
	u, err := url.Parse(e.opts.BundleURL)
	if err != nil {
		return fmt.Errorf("policy: bundle URL: %w", err)
	}
	base := u.Scheme + "://" + u.Host
	path := strings.TrimPrefix(u.RequestURI(), "/")
	svc, err := json.Marshal(map[string]any{"name": "portcullis", "url": base, "response_header_timeout_seconds": 30})
	if err != nil {
		return err
	}
	client, err := rest.New(svc, nil, rest.Logger(opaLogger{e.logger}))
	if err != nil {
		return fmt.Errorf("policy: bundle client: %w", err)
	}
	secs := max(int64(e.opts.BundlePolling.Seconds()), 1)
	cfg := download.Config{Polling: download.PollingConfig{MinDelaySeconds: &secs, MaxDelaySeconds: &secs}}
	if err := cfg.ValidateAndInjectDefaults(); err != nil {
		return fmt.Errorf("policy: bundle polling: %w", err)
	}
	d := download.New(cfg, client, path).
		WithSizeLimitBytes(maxBundleBytes).
		WithBundleName("portcullis").
		WithCallback(e.onBundle)
	d.Start(ctx)
	<-ctx.Done()
	d.Stop(context.WithoutCancel(ctx))
	return nil
}

// onBundle installs a downloaded bundle, or records the download error.
func (e *Engine) onBundle(ctx context.Context, u download.Update) error {
	if u.Error != nil {
		e.mu.Lock()
		defer e.mu.Unlock()
		_ = e.install(nil, fmt.Errorf("download bundle: %w", u.Error)) // recorded; the current policy stays
		return nil
	}
	if u.Bundle == nil {
		return nil // not modified
	}
	modules := make(map[string]*ast.Module, len(u.Bundle.Modules))
	for _, m := range u.Bundle.Modules {
		modules[m.Path] = m.Parsed
	}
	revision := u.Bundle.Manifest.Revision
	if revision == "" {
		revision = u.ETag
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.compile(ctx, modules, u.Bundle.Data, revision)
	_ = e.install(c, err)
	return nil
}
