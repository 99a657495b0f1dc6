package envoy

import (
	_ "embed"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
)

// shipped is envoy.yaml, the bootstrap Portcullis ships.
//
//go:embed envoy.yaml
var shipped []byte

// Shipped returns the bootstrap in envoy/envoy.yaml, decoded and validated
// as [ParseBootstrap] does: what `portcullis dev` runs when no other
// bootstrap is named.
func Shipped() (*bootstrapv3.Bootstrap, error) { return ParseBootstrap(shipped) }
