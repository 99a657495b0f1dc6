// Package envoy holds the Envoy and Istio configuration Portcullis ships,
// its validation against go-control-plane types, and the development front
// door that applies Envoy's ext_authz and rate-limit filter semantics.
package envoy
