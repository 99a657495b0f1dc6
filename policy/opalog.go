package policy

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/open-policy-agent/opa/v1/logging"
)

// opaLogger adapts a *slog.Logger to OPA's logging.Logger, so the bundle
// downloader logs where the rest of Portcullis does.
type opaLogger struct{ l *slog.Logger }

var _ logging.Logger = opaLogger{}

func (o opaLogger) log(level slog.Level, f string, a ...any) {
	if o.l.Enabled(context.Background(), level) {
		o.l.Log(context.Background(), level, fmt.Sprintf(f, a...))
	}
}

func (o opaLogger) Debug(f string, a ...any) { o.log(slog.LevelDebug, f, a...) }
func (o opaLogger) Info(f string, a ...any)  { o.log(slog.LevelInfo, f, a...) }
func (o opaLogger) Warn(f string, a ...any)  { o.log(slog.LevelWarn, f, a...) }
func (o opaLogger) Error(f string, a ...any) { o.log(slog.LevelError, f, a...) }

func (o opaLogger) WithFields(fields map[string]any) logging.Logger {
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		args = append(args, k, v)
	}
	return opaLogger{o.l.With(args...)}
}

func (o opaLogger) GetLevel() logging.Level { return logging.Debug }
func (o opaLogger) SetLevel(logging.Level)  {}
