package ratelimittest_test

import (
	"bufio"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

// echoServer echoes lines until the test ends.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip writes a line and reads the echo within d.
func roundTrip(c net.Conn, r *bufio.Reader, d time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(d)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("bad echo " + line)
	}
	return nil
}

func TestProxy(t *testing.T) {
	p := ratelimittest.NewProxy(t, echoServer(t))
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c, bufio.NewReader(c)
	}
	old, oldR := dial()
	if err := roundTrip(old, oldR, time.Second); err != nil {
		t.Fatalf("before Cut: %v", err)
	}

	p.Cut()
	// An existing connection freezes: a timeout, not an error.
	if err := roundTrip(old, oldR, 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("existing connection while cut: %v, want a timeout", err)
	}
	// New connections are accepted, then freeze too.
	fresh, freshR := dial()
	if err := roundTrip(fresh, freshR, 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("new connection while cut: %v, want a timeout", err)
	}

	p.Restore()
	// Held bytes are delivered: each connection first gets its earlier
	// echo, then the next.
	for name, c := range map[string]struct {
		c net.Conn
		r *bufio.Reader
	}{"existing": {old, oldR}, "new": {fresh, freshR}} {
		if err := c.c.SetDeadline(time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if line, err := c.r.ReadString('\n'); err != nil || line != "ping\n" {
			t.Errorf("%s: held echo %q, %v", name, line, err)
		}
		if err := roundTrip(c.c, c.r, time.Second); err != nil {
			t.Errorf("%s after Restore: %v", name, err)
		}
	}

	p.Close()
	if err := roundTrip(old, oldR, time.Second); err == nil {
		t.Error("connection works after Close")
	}
	p.Close() // idempotent
}
