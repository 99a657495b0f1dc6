package ratelimit

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"strconv"

	"github.com/portcullis-mcp/portcullis/internal/filewatch"
)

// Log attribute keys of WatchConfig.
const (
	watchAttrError   = "error"
	watchAttrDomains = "domains"
	watchAttrDir     = "dir"
)

// WatchConfig keeps the rate-limit configuration at paths (as LoadConfig
// reads them) current. It watches the directories that hold the paths
// (the directory itself for a directory, the parent for a file, so that
// replacing a file by rename and Kubernetes ConfigMap symlink swaps are
// seen), and after a change, once the events have been quiet for
// about 200ms, loads everything again and calls install with the new
// Config. A configuration that fails to load is logged at error level with
// every problem (file and path) and not installed: the previous one stays.
// A reload whose files are byte for byte those last installed is skipped.
//
// Once its watches are in place, WatchConfig loads and installs the
// configuration as it then is, so a change made after the caller's own
// LoadConfig is never missed. install is called from WatchConfig's
// goroutine, never concurrently. WatchConfig returns nil when ctx ends, or
// an error when it cannot watch (a directory is missing). A nil logger
// logs nothing.
func WatchConfig(ctx context.Context, paths []string, logger *slog.Logger, install func(*Config)) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var installed [sha256.Size]byte
	haveInstalled := false
	reload := func() {
		files, err := readConfigFiles(paths)
		var cfg *Config
		var sum [sha256.Size]byte
		if err == nil {
			sum = fingerprint(files)
			if haveInstalled && sum == installed {
				return
			}
			cfg, err = parseConfig(files)
		}
		if err != nil {
			logger.LogAttrs(ctx, slog.LevelError, "rate limit configuration not loaded; the previous one stays",
				slog.Any(watchAttrError, err))
			return
		}
		installed, haveInstalled = sum, true
		install(cfg)
		logger.LogAttrs(ctx, slog.LevelInfo, "rate limit configuration loaded",
			slog.Any(watchAttrDomains, cfg.Domains()))
	}
	return filewatch.Watch(ctx, filewatch.Options{Paths: paths, Initial: true, Logger: logger}, reload)
}

// fingerprint identifies a set of files by names and contents.
func fingerprint(files []configFile) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range files {
		h.Write([]byte(strconv.Itoa(len(f.name))))
		h.Write([]byte(f.name))
		h.Write([]byte(strconv.Itoa(len(f.data))))
		h.Write(f.data)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
