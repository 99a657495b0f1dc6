package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		output string
	}{
		{"no command", nil, 2, "Usage:"},
		{"help", []string{"-h"}, 0, "bench compare"},
		{"unknown", []string{"bogus"}, 2, `unknown command "bogus"`},
		{"scenarios", []string{"scenarios"}, 0, "rl-redis"},
		{"compare help", []string{"compare", "-h"}, 0, "-rounds"},
		{"bad loads", []string{"compare", "-loads", "x"}, 2, "-loads"},
		{"unknown scenario", []string{"compare", "-portcullis", "/nonexistent", "nope"}, 2, `unknown scenario "nope"`},
		{"run without requests", []string{"run"}, 2, "-requests is required"},
		{"chart without files", []string{"chart"}, 2, "no result files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var out bytes.Buffer
			if code := run(ctx, tc.args, &out, &out); code != tc.code {
				t.Errorf("exit %d, want %d; output:\n%s", code, tc.code, out.String())
			}
			if !strings.Contains(out.String(), tc.output) {
				t.Errorf("output lacks %q:\n%s", tc.output, out.String())
			}
		})
	}
}
