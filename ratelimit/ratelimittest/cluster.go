package ratelimittest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterMasters is how many masters a private cluster has: enough for a
// request's hash tags to land on different nodes.
const clusterMasters = 3

// Cluster returns the seed addresses of a Redis Cluster for the test: the
// comma-separated REDIS_CLUSTER_ADDRS when it is set, else those of a
// private cluster of three masters (no replicas, no persistence) started
// from the redis-server on PATH on free loopback ports, and stopped when
// the test ends. The private cluster is ready when every node reports
// cluster_state:ok with all 16384 slots assigned and knows the others.
// Without redis-server it skips the test, or fails it if the environment
// variable CI is "true"; a cluster that does not form fails the test.
func Cluster(t testing.TB) []string {
	t.Helper()
	if v := strings.TrimSpace(os.Getenv("REDIS_CLUSTER_ADDRS")); v != "" {
		return strings.Split(v, ",")
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ratelimittest: no redis-server on PATH for a private cluster (or set REDIS_CLUSTER_ADDRS): %v", err)
		}
		t.Skipf("ratelimittest: no redis-server on PATH for a private cluster (or set REDIS_CLUSTER_ADDRS): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	nodes := make([]clusterNode, clusterMasters)
	for i := range nodes {
		n, err := startClusterNode(t, path, dir, i)
		if err != nil {
			t.Fatalf("ratelimittest: cluster node %d: %v", i, err)
		}
		nodes[i] = n
	}
	if err := formCluster(ctx, nodes); err != nil {
		t.Fatalf("ratelimittest: private Redis Cluster did not form: %v (logs in %s)", err, dir)
	}
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.addr
	}
	return addrs
}

// clusterNode is one redis-server of a private cluster.
type clusterNode struct {
	addr   string
	port   int
	bus    int // the cluster bus port
	client *redis.Client
}

// startClusterNode starts node i with cluster mode on, its files in dir,
// and registers its stop with t.
func startClusterNode(t testing.TB, path, dir string, i int) (clusterNode, error) {
	port, err := freePort()
	if err != nil {
		return clusterNode{}, err
	}
	bus, err := freePort()
	if err != nil {
		return clusterNode{}, err
	}
	name := "node" + strconv.Itoa(i)
	cmd := exec.Command(path,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--protected-mode", "yes",
		"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
		"--cluster-config-file", filepath.Join(dir, name+".conf"), "--cluster-node-timeout", "5000",
		"--dir", dir, "--save", "", "--appendonly", "no",
		"--logfile", filepath.Join(dir, name+".log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		return clusterNode{}, err
	}
	n := clusterNode{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, bus: bus}
	n.client = redis.NewClient(RedisOptions(n.addr))
	t.Cleanup(func() {
		_ = n.client.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return n, nil
}

// formCluster waits for every node to answer, gives each a third of the
// slots, introduces them to the first, and waits until all agree.
func formCluster(ctx context.Context, nodes []clusterNode) error {
	for _, n := range nodes {
		if err := poll(ctx, func() error { return n.client.Ping(ctx).Err() }); err != nil {
			return fmt.Errorf("%s: %w", n.addr, err)
		}
	}
	const slots = 16384
	for i, n := range nodes {
		lo, hi := i*slots/len(nodes), (i+1)*slots/len(nodes)-1
		if err := n.client.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			return fmt.Errorf("%s: CLUSTER ADDSLOTS %d..%d: %w", n.addr, lo, hi, err)
		}
	}
	for _, n := range nodes[1:] {
		// The bus port is not port+10000 here, so MEET names it.
		if err := nodes[0].client.Do(ctx, "cluster", "meet", "127.0.0.1", n.port, n.bus).Err(); err != nil {
			return fmt.Errorf("CLUSTER MEET %s: %w", n.addr, err)
		}
	}
	for _, n := range nodes {
		err := poll(ctx, func() error {
			info, err := n.client.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_known_nodes:" + strconv.Itoa(len(nodes))} {
				if !strings.Contains(info, want+"\r\n") {
					return fmt.Errorf("CLUSTER INFO lacks %q", want)
				}
			}
			shards, err := n.client.ClusterShards(ctx).Result()
			if err != nil {
				return err
			}
			owning := 0
			for _, sh := range shards {
				if len(sh.Slots) > 0 {
					owning++
				}
			}
			if owning != len(nodes) {
				return fmt.Errorf("CLUSTER SHARDS lists %d shards owning slots, want %d", owning, len(nodes))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", n.addr, err)
		}
	}
	return nil
}

// poll calls f every 50ms until it succeeds or ctx is done, and returns
// its last error then.
func poll(ctx context.Context, f func() error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-tick.C:
		}
	}
}

// freePort returns a loopback TCP port nothing listened on a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
