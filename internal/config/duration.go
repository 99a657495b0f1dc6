package config

import (
	"fmt"
	"time"
)

// Duration is a time.Duration written as a string in configuration files:
// "250ms", "30s", "5m".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"250ms\" or \"30s\"", clip(string(b)))
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", clip(string(b)))
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
