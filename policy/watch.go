package policy

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// debounce is how long the watcher waits for a burst of file events (an
// editor's write-rename-chmod, a git checkout) to settle before reloading.
const debounce = 200 * time.Millisecond

// watch reloads the policy whenever a file under Paths changes, until ctx
// ends. It watches directories rather than files, so that files replaced by
// rename (editors, Kubernetes ConfigMap updates) are seen.
func (e *Engine) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	for _, p := range e.opts.Paths {
		if err := addWatches(w, p); err != nil {
			return err
		}
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
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = addWatches(w, ev.Name)
				}
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			e.logger.Warn("policy watcher", slog.Any("error", err))
		case <-timer.C:
			_ = e.Reload(ctx) // logged and recorded by Reload
		}
	}
}

// addWatches watches p's directory when p is a file, or p and every
// directory below it.
func addWatches(w *fsnotify.Watcher, p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return w.Add(filepath.Dir(p))
	}
	return filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return w.Add(path)
	})
}
