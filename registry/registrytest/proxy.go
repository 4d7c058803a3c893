package registrytest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards TCP connections to a server (Valkey, PostgreSQL) until Cut: a way to take
// the server down, or make it answer late, under a live client without touching the
// shared server everybody's tests use.
type Proxy struct {
	ln     net.Listener
	target string
	delay  time.Duration

	mu    sync.Mutex
	conns []net.Conn
}

// StartProxy listens on loopback and forwards to target; with delay > 0 what the client
// sends is held back that long (a server that answers late). It is cut when tb ends.
func StartProxy(tb testing.TB, target string, delay time.Duration) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, delay: delay}
	go p.accept()
	tb.Cleanup(p.Cut)
	return p
}

// Addr is the host:port clients dial instead of the server's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes the listener and every forwarded connection.
func (p *Proxy) Cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		if p.delay > 0 {
			go p.late(c, up)
		} else {
			go func() { _, _ = io.Copy(up, c); up.Close() }()
		}
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// late forwards what c sends to up, each chunk delay after it was read.
func (p *Proxy) late(c, up net.Conn) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := c.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now().Add(p.delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	defer up.Close()
	for ch := range q {
		time.Sleep(time.Until(ch.at))
		if _, err := up.Write(ch.b); err != nil {
			return
		}
	}
}
