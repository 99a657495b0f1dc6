// Package filewatch calls a function when files change: the one file
// watcher behind policy reloads, credential file reloads and rate-limit
// configuration reloads.
//
// It watches directories rather than files, so that a file replaced by
// rename (editors, `kubectl apply` of a ConfigMap, which swaps a "..data"
// symlink) is seen, and it waits for a burst of events to settle before it
// calls back once.
package filewatch

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long events must be quiet before the callback.
const DefaultDebounce = 200 * time.Millisecond

// Options configure [Watch].
type Options struct {
	// Paths are files and directories. For a file its directory is
	// watched; a directory is watched itself and, with Recursive, every
	// directory below it, including ones created later.
	Paths     []string
	Recursive bool
	// Match, when not nil, selects the events that count by the changed
	// path; nil counts every event in the watched directories.
	Match func(name string) bool
	// Initial calls the callback once as soon as the watches are in place,
	// so a change made between the caller's first load and the watch is
	// not missed.
	Initial bool
	// Debounce is the quiet time before the callback; DefaultDebounce when
	// zero.
	Debounce time.Duration
	// Logger receives watch errors (after which the callback runs anyway,
	// since events may have been lost); nil discards.
	Logger *slog.Logger
}

// Watch calls onChange after each burst of changes under opts.Paths until
// ctx ends. onChange runs on Watch's goroutine, never concurrently. Watch
// returns nil when ctx ends, or an error when a path cannot be watched.
func Watch(ctx context.Context, opts Options, onChange func()) error {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	debounce := opts.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer w.Close()
	for _, dir := range dirs(opts.Paths) {
		if err := add(w, dir, opts.Recursive); err != nil {
			return fmt.Errorf("watch %s: %w", dir, err)
		}
	}
	if opts.Initial {
		onChange()
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if opts.Recursive && ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = add(w, ev.Name, true)
				}
			}
			if opts.Match == nil || opts.Match(ev.Name) {
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			logger.LogAttrs(ctx, slog.LevelWarn, "file watch error", slog.Any("error", err))
			timer.Reset(debounce)
		case <-timer.C:
			onChange()
		}
	}
}

// dirs are the directories to watch for paths, each once: a directory
// itself, the parent of anything else (a file, or a path that does not
// exist yet).
func dirs(paths []string) []string {
	var out []string
	for _, p := range paths {
		dir := filepath.Dir(p)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			dir = p
		}
		if dir = filepath.Clean(dir); !slices.Contains(out, dir) {
			out = append(out, dir)
		}
	}
	return out
}

func add(w *fsnotify.Watcher, dir string, recursive bool) error {
	if !recursive {
		return w.Add(dir)
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return w.Add(path)
	})
}
