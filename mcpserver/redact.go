package mcpserver

import (
	"log/slog"
	"net/url"
	"slices"
)

// LogValue logs an upstream's shape without what may be a secret: the
// names of its environment variables and headers (API tokens), not their
// values; how many arguments its command has, not which (a --token flag);
// its URL without user info or query.
func (u UpstreamOptions) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("name", u.Name)}
	if u.Command != "" {
		attrs = append(attrs, slog.String("command", u.Command), slog.Int("args", len(u.Args)), slog.Any("env", sortedKeys(u.Env)))
	}
	if u.URL != "" {
		clean := "(invalid)"
		if p, err := url.Parse(u.URL); err == nil {
			clean = (&url.URL{Scheme: p.Scheme, Host: p.Host, Path: p.Path}).String()
		}
		attrs = append(attrs, slog.String("url", clean), slog.Any("headers", sortedKeys(u.Headers)))
	}
	return slog.GroupValue(attrs...)
}

var _ slog.LogValuer = UpstreamOptions{}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
