// Package sessions keeps hot, short-lived state in Valkey (or any Redis-protocol server):
// USSD session state with a TTL, resume markers, per-MSISDN rate limits and idempotency
// keys. Nothing here is the system of record; losing it may cut live USSD sessions but
// never a submitted report.
package sessions

import (
	"context"
	"fmt"

	"github.com/valkey-io/valkey-go"
)

// Store is the Valkey adapter. Every key it writes starts with Prefix, so several
// deployments (or tests) can share one server.
type Store struct {
	client valkey.Client
	Prefix string
}

// Open connects to the server at url (redis://host:port/db, rediss:// for TLS, or the
// valkey:// equivalents) and checks that it answers.
func Open(ctx context.Context, url, prefix string) (*Store, error) {
	opt, err := valkey.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("valkey URL: %w", err)
	}
	// Client-side caching needs RESP3 tracking, which we do not use; keep the client plain
	// so it works with any Redis-protocol server.
	opt.DisableCache = true
	c, err := valkey.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect Valkey: %w", err)
	}
	s := &Store{client: c, Prefix: prefix}
	if err := s.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// Ping reports whether Valkey answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Do(ctx, s.client.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("valkey ping: %w", err)
	}
	return nil
}

// Close releases the connections.
func (s *Store) Close() { s.client.Close() }
