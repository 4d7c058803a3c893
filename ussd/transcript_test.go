package ussd_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mhero-health/mhero/ussd/ussdtest"
)

// TestTranscripts plays every dialogue in testdata/transcripts through the HTTP gateways
// against real Valkey, each on a server of its own. go test -update rewrites the screens.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/transcripts/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ussdtest.Run(t, path, ussdtest.Config{BaseURL: e.URL, Client: e.Client,
				Secrets: map[string]string{"jsonop": jsonOpSecret}, Expect: e.expect, Update: *update})
		})
	}
}
