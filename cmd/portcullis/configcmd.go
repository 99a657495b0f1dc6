package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/metric"

	"github.com/portcullis-mcp/portcullis/internal/config"
	"github.com/portcullis-mcp/portcullis/policy"
	"github.com/portcullis-mcp/portcullis/ratelimit"
)

func configCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		return usagef("usage: portcullis config check --config FILE")
	}
	fs := newFlags("config check", stderr)
	path := fs.String("config", "", "configuration file")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, getenv)
	if err != nil {
		return err
	}
	// The files the configuration names must load too: the policy (a
	// bundle is fetched at run time), the providers' key and user files, the
	// rate limits.
	var errs []error
	if len(cfg.Policy.Paths) > 0 {
		if _, err := policy.New(context.Background(), policyOptions(cfg, nil, nil)); err != nil {
			errs = append(errs, fmt.Errorf("policy: %w", err))
		}
	}
	if _, err := buildAuthn(cfg, nil, slog.New(slog.DiscardHandler)); err != nil {
		errs = append(errs, err)
	}
	if len(cfg.RateLimit.ConfigPaths) > 0 {
		paths := make([]string, len(cfg.RateLimit.ConfigPaths))
		for i, p := range cfg.RateLimit.ConfigPaths {
			paths[i] = cfg.Path(p)
		}
		if _, err := ratelimit.LoadConfig(paths); err != nil {
			errs = append(errs, fmt.Errorf("ratelimit.config_paths: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return usageError{fmt.Errorf("%s:\n  %s", *path, strings.ReplaceAll(err.Error(), "\n", "\n  "))}
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return nil
}

// policyOptions are the policy engine options a configuration describes.
func policyOptions(cfg *config.Config, logger *slog.Logger, mp metric.MeterProvider) *policy.Options {
	paths := make([]string, len(cfg.Policy.Paths))
	for i, p := range cfg.Policy.Paths {
		paths[i] = cfg.Path(p)
	}
	opts := policy.Options{
		Paths:         paths,
		BundleURL:     cfg.Policy.Bundle.URL,
		BundlePolling: cfg.Policy.Bundle.Polling.Std(),
		Decision:      cfg.Policy.Decision,
		Watch:         cfg.Policy.Watch,
		DryRun:        cfg.Policy.DryRun,
		// 0 in the configuration turns the cache off; the engine's 0 is
		// its default size.
		DecisionCacheSize: cmp.Or(cfg.Policy.DecisionCacheSize, -1),
		Logger:            logger,
		MeterProvider:     mp,
	}
	return &opts
}
