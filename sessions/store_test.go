package sessions_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/sessions"
)

func TestOpenPingsTheServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Valkey/Redis")
	}
	s, err := sessions.Open(t.Context(), registrytest.ValkeyURL(), registrytest.KeyPrefix(t))
	if err != nil {
		t.Fatalf("connect Valkey (run make deps): %v", err)
	}
	defer s.Close()
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestOpenFailsClearlyWhenNothingListens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := sessions.Open(ctx, "redis://127.0.0.1:1/0", "x:")
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "valkey") {
		t.Fatalf("Open on a closed port: err = %v, want a Valkey connection error", err)
	}
	if _, err := sessions.Open(ctx, "http://nope", "x:"); err == nil {
		t.Error("Open accepted a non-Redis URL")
	}
}
