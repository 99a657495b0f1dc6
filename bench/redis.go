package bench

import (
	"bufio"
	"context"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisUsage is what Redis executed during a measured window, from INFO
// commandstats and stats, less the meter's own INFO.
//
// Redis counts the commands a Lua script runs (redis.call) in
// commandstats like any other, so one EVALSHA that reads and writes four
// keys shows as five or more commands. Round trips are told apart by the
// client read events Redis processed (total_reads_processed): without
// pipelining, one per command a client sent.
type RedisUsage struct {
	// Commands counts every command, those run inside scripts included.
	Commands int64 `json:"commands"`
	// PerRequest is Commands over the requests answered in the window.
	PerRequest float64 `json:"commands_per_request"`
	// Scripts counts EVAL, EVALSHA and FCALL (and their _RO forms).
	Scripts           int64   `json:"scripts"`
	ScriptsPerRequest float64 `json:"scripts_per_request"`
	// Reads counts client read events: about one per round trip.
	Reads           int64   `json:"reads"`
	ReadsPerRequest float64 `json:"round_trips_per_request"`
	// ByCommand breaks Commands down by name ("evalsha", "get").
	ByCommand map[string]int64 `json:"by_command"`
	// CPUSeconds is the server's CPU time (INFO cpu: used_cpu_user +
	// used_cpu_sys, all its threads), and CPUPerRequest that in µs over
	// the requests answered: Redis shares the machine's cores with the
	// server measured and the generator.
	CPUSeconds    float64 `json:"cpu_seconds"`
	CPUPerRequest float64 `json:"cpu_per_request_us"`
}

// RedisMeter is a [Meter] of the commands a Redis server executes. Redis
// counts commands server-wide, so the numbers are exact only when nothing
// else uses that server: the compare command starts a private one.
type RedisMeter struct {
	Client *redis.Client

	begin, end map[string]int64
	err        error
}

// Begin reads the counters when the window opens.
func (m *RedisMeter) Begin() error {
	m.begin, m.err = commandStats(m.Client)
	return m.err
}

// End reads them when it closes.
func (m *RedisMeter) End() error {
	if m.err != nil {
		return nil
	}
	m.end, m.err = commandStats(m.Client)
	return m.err
}

// Report adds the difference to r.
func (m *RedisMeter) Report(r *Result) {
	if m.err != nil || m.end == nil {
		return
	}
	u := &RedisUsage{ByCommand: map[string]int64{}}
	for name, n := range m.end {
		d := n - m.begin[name]
		if d <= 0 || name == "info" || name == readsKey || name == cpuKey { // the meter's own, or not a command
			continue
		}
		u.ByCommand[name] = d
		u.Commands += d
		switch name {
		case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
			u.Scripts += d
		}
	}
	// The INFO that took the first sample was read between the samples.
	u.Reads = max(0, m.end[readsKey]-m.begin[readsKey]-1)
	u.CPUSeconds = max(0, float64(m.end[cpuKey]-m.begin[cpuKey])/1e6)
	if n := r.Requests + r.Errors; n > 0 {
		u.CPUPerRequest = u.CPUSeconds * 1e6 / float64(n)
		u.PerRequest = float64(u.Commands) / float64(n)
		u.ScriptsPerRequest = float64(u.Scripts) / float64(n)
		u.ReadsPerRequest = float64(u.Reads) / float64(n)
	}
	r.Redis = u
}

// readsKey holds total_reads_processed among the command counts, cpuKey
// the server's CPU time in µs.
const (
	readsKey = "#reads"
	cpuKey   = "#cpu"
)

// commandStats returns the calls of every command Redis has run, and the
// read events it processed under readsKey.
func commandStats(c *redis.Client) (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "commandstats", "stats", "cpu").Result()
	if err != nil {
		return nil, err
	}
	return parseCommandStats(info), nil
}

// parseCommandStats reads lines such as
// "cmdstat_evalsha:calls=12,usec=30,usec_per_call=2.50,...", and
// "used_cpu_user:1.234567" and "used_cpu_sys:…" (seconds) into cpuKey.
func parseCommandStats(info string) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, fields, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		if name == "used_cpu_user" || name == "used_cpu_sys" {
			if v, err := strconv.ParseFloat(fields, 64); err == nil {
				out[cpuKey] += int64(math.Round(v * 1e6))
			}
			continue
		}
		if name == "total_reads_processed" {
			if n, err := strconv.ParseInt(fields, 10, 64); err == nil {
				out[readsKey] = n
			}
			continue
		}
		name, ok = strings.CutPrefix(name, "cmdstat_")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(fields, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					out[name] = n
				}
			}
		}
	}
	return out
}
