// Package ratelimit implements Envoy's rate limit service
// (envoy.service.ratelimit.v3.RateLimitService): configuration in
// envoyproxy/ratelimit's format, descriptor matching, the fixed window,
// sliding window and GCRA algorithms, and the memory and Redis stores.
package ratelimit
