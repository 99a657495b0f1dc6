package identity

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/portcullis-mcp/portcullis/internal/config"
	"github.com/portcullis-mcp/portcullis/internal/filewatch"
)

// This file holds what the API key and basic auth providers share: a
// credential file that is decoded strictly and reloaded when it changes,
// and a result cache that lives while the provider's Run does.

// Log attribute keys used by the providers in this file's family.
const (
	credLogKeyFile     = "file"
	credLogKeyProvider = "provider"
	credLogKeyError    = "error"
	credLogKeyEntries  = "entries"
	credLogKeyStatus   = "status"
)

// credFile is a file of credentials (digests, bcrypt hashes) that is loaded
// once at construction and reloaded by watch whenever its content changes.
// A file that fails to load on reload leaves the previous credentials in
// place.
type credFile struct {
	path     string
	what     string // "keys file", for messages
	provider string
	logger   *slog.Logger
	// apply parses the file and, when it is good, swaps it in; it returns
	// the number of entries.
	apply func(data []byte) (int, error)

	// onReload, when set (by tests), is called after every reload that saw
	// changed content, with its outcome.
	onReload func(error)

	mu  sync.Mutex
	sum [sha256.Size]byte // of the content last applied or rejected
}

// load reads the file and applies it. It is called once, by the
// constructor; an error names the file.
func (f *credFile) load() error {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("%s: %w", f.what, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.apply(data); err != nil {
		return fmt.Errorf("%s %s: %w", f.what, f.path, err)
	}
	f.sum = sha256.Sum256(data)
	return nil
}

// reload reads the file and applies it when its content changed since the
// last load or reload, logging the outcome.
func (f *credFile) reload() {
	data, err := os.ReadFile(f.path)
	if err != nil {
		// Between a delete and a create, or a transient error: the next
		// event retries.
		f.logger.Warn("cannot read the credential file; keeping the previous credentials",
			slog.String(credLogKeyProvider, f.provider), slog.String(credLogKeyFile, f.path), slog.Any(credLogKeyError, err))
		return
	}
	sum := sha256.Sum256(data)
	f.mu.Lock()
	if sum == f.sum {
		f.mu.Unlock()
		return
	}
	f.sum = sum // a bad file is reported once, not on every event
	n, err := f.apply(data)
	f.mu.Unlock()
	if err != nil {
		f.logger.Error("credential file reload failed; keeping the previous credentials",
			slog.String(credLogKeyProvider, f.provider), slog.String(credLogKeyFile, f.path), slog.Any(credLogKeyError, err))
	} else {
		f.logger.Info("credential file reloaded",
			slog.String(credLogKeyProvider, f.provider), slog.String(credLogKeyFile, f.path), slog.Int(credLogKeyEntries, n))
	}
	if f.onReload != nil {
		f.onReload(err)
	}
}

// watch reloads the file whenever it changes, until ctx ends. Besides the
// file itself, changes to names starting with ".." count: Kubernetes
// ConfigMap volumes swap a "..data" symlink. The file may have changed
// between the constructor's load and the watch: it is read again at once.
func (f *credFile) watch(ctx context.Context) error {
	clean := filepath.Clean(f.path)
	return filewatch.Watch(ctx, filewatch.Options{
		Paths:   []string{f.path},
		Initial: true,
		Match: func(name string) bool {
			return filepath.Clean(name) == clean || strings.HasPrefix(filepath.Base(name), "..")
		},
		Logger: f.logger.With(slog.String(credLogKeyProvider, f.provider), slog.String(credLogKeyFile, f.path)),
	}, f.reload)
}

// decodeCredFile decodes a keys or users file into v as strictly as the
// configuration itself (config.DecodeYAML): every unknown or duplicate key,
// alias or wrong type is reported with its path and line.
func decodeCredFile(data []byte, v any) error {
	return config.DecodeYAML(data, v)
}

// credCache is a ristretto cache of authentication outcomes keyed by
// CredentialKey. It exists only while the provider's Run is running:
// ristretto starts goroutines, which constructors must not, and must not be
// closed while in use. Without Run, get always misses and set does nothing.
type credCache[V any] struct {
	size int64

	mu sync.RWMutex
	c  *ristretto.Cache[string, V]
}

func (cc *credCache[V]) open() error {
	c, err := ristretto.NewCache(&ristretto.Config[string, V]{
		NumCounters: 10 * cc.size,
		MaxCost:     cc.size, // each entry costs 1
		BufferItems: 64,
		// Count entries, not ristretto's bookkeeping bytes.
		IgnoreInternalCost: true,
	})
	if err != nil {
		return err
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.c != nil {
		c.Close()
		return errors.New("the provider is already running")
	}
	cc.c = c
	return nil
}

func (cc *credCache[V]) close() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.c != nil {
		cc.c.Close()
		cc.c = nil
	}
}

func (cc *credCache[V]) get(key string) (V, bool) {
	cc.mu.RLock()
	defer cc.mu.RUnlock()
	if cc.c == nil {
		var zero V
		return zero, false
	}
	return cc.c.Get(key)
}

// set stores v under key for ttl; a non-positive ttl stores nothing.
func (cc *credCache[V]) set(key string, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	cc.mu.RLock()
	defer cc.mu.RUnlock()
	if cc.c != nil {
		cc.c.SetWithTTL(key, v, 1, ttl)
	}
}

// wait applies buffered sets (for tests).
func (cc *credCache[V]) wait() {
	cc.mu.RLock()
	defer cc.mu.RUnlock()
	if cc.c != nil {
		cc.c.Wait()
	}
}
