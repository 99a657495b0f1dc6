package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/metric"

	"github.com/portcullis-mcp/portcullis/internal/config"
	"github.com/portcullis-mcp/portcullis/policy"
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
	// The policy files must compile too; a bundle is fetched at run time.
	if len(cfg.Policy.Paths) > 0 {
		if _, err := policy.New(context.Background(), policyOptions(cfg, nil, nil)); err != nil {
			return usageError{fmt.Errorf("%s: policy:\n  %v", *path, err)}
		}
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
		Logger:        logger,
		MeterProvider: mp,
	}
	return &opts
}
