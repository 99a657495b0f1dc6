package ratelimittest

import (
	"net"
	"sync"
	"testing"
)

// Proxy is a loopback TCP proxy in front of a target address, for
// simulating a Redis that stops answering. It listens on 127.0.0.1 at a
// free port. While cut, it still accepts connections but forwards nothing
// in either direction, on new and existing connections alike, so clients
// see timeouts rather than refused or reset connections — as behind a
// network partition. Bytes already read are held and delivered on
// [Proxy.Restore], like TCP retransmission after a partition heals.
//
// A Proxy is safe for concurrent use.
type Proxy struct {
	t      testing.TB
	target string
	ln     net.Listener

	mu     sync.Mutex
	cut    bool
	resume chan struct{} // closed by Restore; replaced by Cut
	conns  map[net.Conn]struct{}
	closed chan struct{}
	done   bool
	wg     sync.WaitGroup
}

// NewProxy starts a proxy to target and closes it when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ratelimittest: proxy listen: %v", err)
	}
	p := &Proxy{
		t:      t,
		target: target,
		ln:     ln,
		resume: make(chan struct{}),
		conns:  make(map[net.Conn]struct{}),
		closed: make(chan struct{}),
	}
	close(p.resume)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut stops forwarding: connections are still accepted, but no byte moves
// until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		p.cut = true
		p.resume = make(chan struct{})
	}
}

// Restore resumes forwarding on every connection.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		p.cut = false
		close(p.resume)
	}
}

// Close stops the proxy, closes every connection and waits for its
// goroutines. It is called when the test ends; calling it again does
// nothing.
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
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			p.t.Logf("ratelimittest: proxy dial %s: %v", p.target, err)
			_ = client.Close()
			continue
		}
		if !p.track(client, server) {
			return
		}
		p.wg.Add(2)
		go p.pump(server, client)
		go p.pump(client, server)
	}
}

// track registers a connection pair, or closes it if the proxy is closed.
func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// gate blocks while the proxy is cut; it reports false once the proxy is
// closed.
func (p *Proxy) gate() bool {
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

// pump copies src to dst, holding every chunk at the gate.
func (p *Proxy) pump(dst, src net.Conn) {
	defer p.wg.Done()
	defer func() {
		// One side ended: end the pair, as a plain TCP relay does.
		_ = dst.Close()
		_ = src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		if !p.gate() {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, reset or closed: end the pair
		}
	}
}
