package policy

import (
	"context"

	"github.com/portcullis-mcp/portcullis/internal/filewatch"
)

// watch reloads the policy whenever a file under Paths changes, until ctx
// ends. Unchanged files are not compiled again (see Reload).
func (e *Engine) watch(ctx context.Context) error {
	return filewatch.Watch(ctx, filewatch.Options{Paths: e.opts.Paths, Recursive: true, Initial: true, Logger: e.logger},
		func() { _ = e.Reload(ctx) }) // logged and recorded by Reload
}
