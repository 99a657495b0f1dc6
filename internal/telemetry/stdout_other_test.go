//go:build !linux

package telemetry

import "testing"

func captureStdout(t *testing.T, _ func()) string {
	t.Skip("stdout capture needs Linux")
	return ""
}
