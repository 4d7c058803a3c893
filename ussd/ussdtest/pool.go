package ussdtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mhero-health/mhero/ussd"
)

// ConnPool is an aggregator's side of the gateway for load tests: a fixed set of
// keep-alive HTTP/1.1 connections to one server, each used by one hop at a time by the
// goroutine that took it, without http.Transport's connection goroutines and hand-offs,
// and with a lean writer and reader of the few headers a gateway exchange has. With
// http.Client, the load generator cost about as much CPU per hop as the server spends
// serving it, and on a 2-core machine a measurement of the server should not be starved
// by its client. It is not a general HTTP client: one host, Content-Length bodies, no
// redirects, proxies or TLS; what it cannot read fails the hop.
type ConnPool struct {
	addr  string
	conns chan *poolConn
}

type poolConn struct {
	c  net.Conn // nil until first used, or after an error closed it
	br *bufio.Reader
	bw *bufio.Writer
}

// hopTimeout bounds one hop without a deadline of its own, as an aggregator's does.
const hopTimeout = 10 * time.Second

// NewConnPool returns a pool of n connections to addr (host:port), dialled when first
// used.
func NewConnPool(addr string, n int) *ConnPool {
	p := &ConnPool{addr: addr, conns: make(chan *poolConn, n)}
	for range n {
		p.conns <- &poolConn{}
	}
	return p
}

// Do sends req on a free connection (waiting for one) and reads the answer with s. A
// connection that fails is closed and dialled again by the next hop that takes it.
func (p *ConnPool) Do(ctx context.Context, s Session, req *http.Request) (ussd.Reply, error) {
	var pc *poolConn
	select {
	case pc = <-p.conns:
	case <-ctx.Done():
		return ussd.Reply{}, ctx.Err()
	}
	rep, err := pc.do(ctx, p.addr, s, req)
	if err != nil && pc.c != nil {
		pc.c.Close()
		pc.c = nil
	}
	p.conns <- pc
	return rep, err
}

func (pc *poolConn) do(ctx context.Context, addr string, s Session, req *http.Request) (ussd.Reply, error) {
	if pc.c == nil {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return ussd.Reply{}, err
		}
		pc.c = c
		if pc.br == nil {
			pc.br, pc.bw = bufio.NewReader(c), bufio.NewWriter(c)
		} else {
			pc.br.Reset(c)
			pc.bw.Reset(c)
		}
	}
	// A hop that gets no answer fails rather than holding its connection forever.
	d := time.Now().Add(hopTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	if err := pc.c.SetDeadline(d); err != nil {
		return ussd.Reply{}, err
	}
	if err := writeRequest(pc.bw, req); err != nil {
		return ussd.Reply{}, err
	}
	if err := pc.bw.Flush(); err != nil {
		return ussd.Reply{}, err
	}
	resp, err := readResponse(pc.br)
	if err != nil {
		return ussd.Reply{}, err
	}
	return s.Reply(resp)
}

// writeRequest writes req as HTTP/1.1 on a kept-alive connection: the request line, Host,
// Content-Length, req's own headers and the body. (Request.Write costs the load
// generator about as much again as the server spends reading it.)
func writeRequest(w *bufio.Writer, req *http.Request) error {
	if req.Body == nil || req.ContentLength < 0 {
		return fmt.Errorf("ussdtest: ConnPool sends requests with a known body length")
	}
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(req.URL.Host)
	w.WriteString("\r\nContent-Length: ")
	w.WriteString(strconv.FormatInt(req.ContentLength, 10))
	w.WriteString("\r\n")
	for k, vs := range req.Header {
		for _, v := range vs {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\r\n")
	n, err := io.Copy(w, req.Body)
	if err == nil && n != req.ContentLength {
		err = fmt.Errorf("ussdtest: body of %d bytes, Content-Length %d", n, req.ContentLength)
	}
	return err
}

// readResponse reads one answer with a Content-Length (net/http's server gives small
// answers one): the status, Content-Type and the body, which is all Session.Reply reads.
// Anything else it cannot read (chunked, or the server closing) is an error, not a guess.
func readResponse(r *bufio.Reader) (*http.Response, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	proto, rest, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if proto != "HTTP/1.1" || err != nil {
		return nil, fmt.Errorf("ussdtest: status line %q", line)
	}
	resp := &http.Response{StatusCode: status, Header: http.Header{}, ContentLength: -1}
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, fmt.Errorf("ussdtest: answer headers: %w", err)
		}
		h := strings.TrimRight(string(line), "\r\n")
		if h == "" {
			break
		}
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return nil, fmt.Errorf("ussdtest: answer header %q", h)
		}
		v = strings.TrimSpace(v)
		switch {
		case strings.EqualFold(k, "Content-Length"):
			if resp.ContentLength, err = strconv.ParseInt(v, 10, 64); err != nil || resp.ContentLength < 0 {
				return nil, fmt.Errorf("ussdtest: Content-Length %q", v)
			}
		case strings.EqualFold(k, "Content-Type"):
			resp.Header.Set("Content-Type", v)
		case strings.EqualFold(k, "Transfer-Encoding"), strings.EqualFold(k, "Connection") && strings.EqualFold(v, "close"):
			return nil, fmt.Errorf("ussdtest: ConnPool cannot read an answer with %s: %s", k, v)
		}
	}
	if resp.ContentLength < 0 || resp.ContentLength > 1<<20 {
		return nil, fmt.Errorf("ussdtest: answer without a usable Content-Length (%d)", resp.ContentLength)
	}
	body := make([]byte, resp.ContentLength)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("ussdtest: answer body: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// Close closes every connection; call it once the hops are done.
func (p *ConnPool) Close() {
	for range cap(p.conns) {
		if pc := <-p.conns; pc.c != nil {
			pc.c.Close()
		}
	}
}
