package ratelimit

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// While Run runs, the scripts of concurrent Takes go to Redis in pipelines:
// a few workers each take every call waiting (up to maxBatch) and send
// them in one write, reading the replies in one go. Each request still
// costs exactly one EVALSHA; what a batch shares is the system calls and
// the connection checkout on both sides, which under load were most of a
// request's cost. A lone call waits for nothing: a free worker takes it at
// once.

const (
	pipelineWorkers = 4   // pipelines in flight at once
	maxBatch        = 64  // calls per pipeline
	pendingCalls    = 512 // calls waiting for a worker
)

// scriptCall is one script run waiting for its pipeline.
type scriptCall struct {
	args []any // the EVALSHA (redisGroup.cmd)
	n    int
	res  []int64
	err  error
	done chan struct{}
}

// runBatched runs the script through the pipeline workers; false when they
// are not running (Run is not).
func (s *RedisStore) runBatched(ctx context.Context, args []any, n int) (res []int64, batched bool, err error) {
	calls := s.calls.Load()
	if calls == nil {
		return nil, false, nil
	}
	c := &scriptCall{args: args, n: n, done: make(chan struct{})}
	select {
	case *calls <- c:
	case <-ctx.Done():
		return nil, true, ctx.Err()
	}
	select {
	case <-c.done:
		return c.res, true, c.err
	case <-ctx.Done():
		// The call may still be counted: as when a reply comes late.
		return nil, true, ctx.Err()
	}
}

// failPending answers the calls no worker will take.
func failPending(calls chan *scriptCall) {
	for {
		select {
		case c := <-calls:
			c.err = errStoreStopped
			close(c.done)
		default:
			return
		}
	}
}

var errStoreStopped = errors.New("the store is stopping")

// pipeline is one worker: it sends what is waiting, then waits for more.
func (s *RedisStore) pipeline(ctx context.Context, calls <-chan *scriptCall) {
	batch := make([]*scriptCall, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-calls:
			batch = append(batch[:0], c)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case c := <-calls:
				batch = append(batch, c)
			default:
				break more
			}
		}
		s.execBatch(batch)
	}
}

// execBatch sends a batch in one pipeline within the store's timeout and
// hands each call its reply. A script Redis does not have (NOSCRIPT, after
// a restart or failover) is run again with EVAL for that call.
func (s *RedisStore) execBatch(batch []*scriptCall) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	pipe := s.client.Pipeline()
	cmds := make([]*redis.IntSliceCmd, len(batch))
	for i, c := range batch {
		cmds[i] = evalCmd(ctx, c.args)
		_ = pipe.Process(ctx, cmds[i])
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, c := range batch {
		res, err := cmds[i].Result()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			res, err = s.runSource(ctx, c.args)
		}
		c.res, c.err = checkReply(res, err, c.n)
		close(c.done)
	}
}
