package identity

import (
	"log/slog"
	"slices"
)

// Types that hold credentials log without them: whoever passes one to a
// logger by mistake gets its shape, never the secret. fmt's %v is not
// covered; nothing here is formatted with it.

// redacted stands in for a secret that is set.
const redacted = "REDACTED"

func secretValue(s string) slog.Value {
	if s == "" {
		return slog.StringValue("")
	}
	return slog.StringValue(redacted)
}

// LogValue logs the request's source and the names of its headers, never
// their values (Authorization, API keys, cookies).
func (r Request) LogValue() slog.Value {
	names := make([]string, 0, len(r.Headers))
	for k := range r.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	return slog.GroupValue(
		slog.String("source_address", r.SourceAddress),
		slog.String("principal", r.Principal),
		slog.Any("header_names", names),
		slog.Bool("certificate", r.Certificate != ""),
	)
}

// LogValue logs the options with the client secret redacted.
func (o IntrospectionOptions) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", o.Name),
		slog.String("url", o.URL),
		slog.String("client_id", o.ClientID),
		slog.Attr{Key: "client_secret", Value: secretValue(o.ClientSecret)},
		slog.Duration("cache_ttl", o.CacheTTL),
		slog.Duration("timeout", o.Timeout),
	)
}

// LogValue logs the provider's name and endpoint; its client credentials
// never.
func (i *Introspection) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", i.name), slog.String("url", i.endpoint))
}

// LogValue logs the options with the private key redacted.
func (o SignerOptions) LogValue() slog.Value {
	key := ""
	if o.Key != nil {
		key = redacted
	}
	return slog.GroupValue(slog.String("audience", o.Audience), slog.Duration("ttl", o.TTL), slog.String("key", key))
}

// LogValue logs the signer's key id and audience; its private key never.
func (s *Signer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kid", s.kid), slog.String("audience", s.aud), slog.Duration("ttl", s.ttl))
}

// LogValue logs an API key entry without its digest: a digest of a weak
// key can be reversed by brute force.
func (e apiKeyEntry) LogValue() slog.Value {
	return slog.GroupValue(slog.String("subject", e.Subject), slog.String("client_id", e.ClientID),
		slog.Attr{Key: "sha256", Value: secretValue(e.SHA256)})
}

// LogValue logs a basic auth user without the password hash.
func (e basicUserEntry) LogValue() slog.Value {
	return slog.GroupValue(slog.String("username", e.Username), slog.String("subject", e.Subject),
		slog.Attr{Key: "bcrypt", Value: secretValue(e.Bcrypt)})
}

var (
	_ slog.LogValuer = Request{}
	_ slog.LogValuer = IntrospectionOptions{}
	_ slog.LogValuer = (*Introspection)(nil)
	_ slog.LogValuer = SignerOptions{}
	_ slog.LogValuer = (*Signer)(nil)
	_ slog.LogValuer = apiKeyEntry{}
	_ slog.LogValuer = basicUserEntry{}
)
