package mcpserver

import (
	"context"
	"log/slog"
)

// demoteInfo hands the go-sdk's info records to the handler at debug
// level. The SDK logs a session's lifecycle at info ("server connecting",
// "server session connected", "… disconnected"): in stateless mode, three
// lines for every HTTP request, more than the audit stream itself. Warnings
// and errors pass unchanged.
type demoteInfo struct{ h slog.Handler }

func demote(l slog.Level) slog.Level {
	if l == slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}

func (d demoteInfo) Enabled(ctx context.Context, l slog.Level) bool {
	return d.h.Enabled(ctx, demote(l))
}

func (d demoteInfo) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return d.h.Handle(ctx, r)
}

func (d demoteInfo) WithAttrs(as []slog.Attr) slog.Handler { return demoteInfo{d.h.WithAttrs(as)} }

func (d demoteInfo) WithGroup(name string) slog.Handler { return demoteInfo{d.h.WithGroup(name)} }
