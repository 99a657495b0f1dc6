package policy

import (
	"crypto/sha256"

	"github.com/portcullis-mcp/portcullis/internal/cache"
)

// decisionCache holds decisions by footprint key (see footprint.go), for
// one compiled policy: a reload starts an empty one.
type decisionCache = cache.Map[[sha256.Size]byte, Decision]

func newDecisionCache(size int) *decisionCache { return cache.New[[sha256.Size]byte, Decision](size) }
