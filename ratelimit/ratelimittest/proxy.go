package ratelimittest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a loopback TCP proxy in front of a target address (Redis, in
// the tests and the soak), for breaking the link the ways a network and a
// server break:
//
//   - Cut holds every byte, on new and existing connections, until Restore
//     delivers them: connections are still accepted, clients time out
//     rather than see a reset, as behind a partition;
//   - SetDelay delays every byte by a duration (a delay line: latency, not
//     a narrower pipe);
//   - Kill closes every connection and refuses new ones until Revive, as a
//     server that died and restarts.
//
// A Proxy is safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string
	closed chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	resume chan struct{} // closed unless cut
	delay  time.Duration
	dead   bool
	conns  map[net.Conn]struct{}
	done   bool
}

// StartProxy listens on a free loopback port and forwards to target until
// Close.
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, closed: make(chan struct{}), resume: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.resume)
	p.wg.Go(p.accept)
	return p, nil
}

// NewProxy starts a proxy to target and closes it when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := StartProxy(target)
	if err != nil {
		t.Fatalf("ratelimittest: proxy listen: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut holds every byte, on new and existing connections, until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resume:
		p.resume = make(chan struct{})
	default: // already cut
	}
}

// Restore delivers the bytes held and forwards again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resume:
	default:
		close(p.resume)
	}
}

// SetDelay delays every byte read from now on by d.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Kill closes every connection and refuses new ones until Revive.
func (p *Proxy) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dead = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// Revive accepts connections again after Kill.
func (p *Proxy) Revive() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dead = false
}

// Close stops the proxy, closes every connection and waits for its
// goroutines; calling it again does nothing.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return
	}
	p.done = true
	close(p.closed)
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		dead := p.dead
		p.mu.Unlock()
		if dead {
			_ = client.Close()
			continue
		}
		server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client, server) {
			return
		}
		p.wg.Go(func() { p.pump(server, client) })
		p.wg.Go(func() { p.pump(client, server) })
	}
}

// track registers a connection pair, or closes it when the proxy is
// closed.
func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		if p.done {
			_ = c.Close()
			continue
		}
		p.conns[c] = struct{}{}
	}
	return !p.done
}

// pump copies src to dst: this goroutine reads and stamps each chunk with
// its delivery time, another writes it then, once the proxy is not cut.
// When either side ends, both connections close, as a TCP relay's would.
func (p *Proxy) pump(dst, src net.Conn) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	line := make(chan chunk, 64)
	writerDone := make(chan struct{})
	p.wg.Go(func() {
		defer close(writerDone)
		defer func() { _ = dst.Close(); _ = src.Close() }()
		for c := range line {
			if !p.hold(c.at) {
				return
			}
			if _, err := dst.Write(c.b); err != nil {
				return
			}
		}
	})
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			at := time.Now().Add(p.delay)
			p.mu.Unlock()
			select {
			case line <- chunk{b: append([]byte(nil), buf[:n]...), at: at}:
			case <-writerDone:
				err = net.ErrClosed
			}
		}
		if err != nil {
			break
		}
	}
	close(line)
	<-writerDone
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// hold waits until at and while the proxy is cut; false when the proxy
// closes meanwhile.
func (p *Proxy) hold(at time.Time) bool {
	if d := time.Until(at); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-p.closed:
			t.Stop()
			return false
		}
	}
	p.mu.Lock()
	resume := p.resume
	p.mu.Unlock()
	select {
	case <-resume:
		return true
	case <-p.closed:
		return false
	}
}
