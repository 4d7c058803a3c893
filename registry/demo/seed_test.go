package demo_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/demo"
)

// importFunc adapts a function to demo.Importer.
type importFunc func(ctx context.Context, r io.Reader, opt registry.ImportOptions) (*registry.ImportResult, error)

func (f importFunc) Import(ctx context.Context, r io.Reader, opt registry.ImportOptions) (*registry.ImportResult, error) {
	return f(ctx, r, opt)
}

func TestSeed(t *testing.T) {
	t.Parallel()
	sz := demo.DefaultSize()
	sz.Workers = 3000
	var got [][]byte
	imp := importFunc(func(ctx context.Context, r io.Reader, opt registry.ImportOptions) (*registry.ImportResult, error) {
		if opt != (registry.ImportOptions{Source: "demo"}) {
			t.Errorf("options %+v", opt)
		}
		b, err := io.ReadAll(r)
		got = append(got, b)
		return &registry.ImportResult{}, err
	})
	if err := demo.Seed(context.Background(), imp, sz); err != nil {
		t.Fatal(err)
	}
	l, f, w := generate(t, sz)
	if len(got) != 3 || !bytes.Equal(got[0], l) || !bytes.Equal(got[1], f) || !bytes.Equal(got[2], w) {
		t.Fatalf("imported %d files, not locations, facilities and workers in that order", len(got))
	}
}

func TestSeedImportFails(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	calls := 0
	imp := importFunc(func(ctx context.Context, r io.Reader, opt registry.ImportOptions) (*registry.ImportResult, error) {
		if calls++; calls == 2 {
			// Read a little, then fail: the writer, blocked on the pipe, must be let go.
			_, _ = r.Read(make([]byte, 100))
			return nil, boom
		}
		_, err := io.Copy(io.Discard, r)
		return &registry.ImportResult{}, err
	})
	err := demo.Seed(context.Background(), imp, demo.DefaultSize())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "facilities") || calls != 2 {
		t.Fatalf("Seed = %v after %d imports, want boom from facilities", err, calls)
	}
}

func TestSeedImporterStopsEarly(t *testing.T) {
	t.Parallel()
	imp := importFunc(func(ctx context.Context, r io.Reader, opt registry.ImportOptions) (*registry.ImportResult, error) {
		_, _ = r.Read(make([]byte, 10))
		return &registry.ImportResult{}, nil
	})
	if err := demo.Seed(context.Background(), imp, demo.DefaultSize()); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("Seed = %v though the importer read 10 bytes and returned", err)
	}
}

func TestSeedCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	imp := importFunc(func(ctx context.Context, r io.Reader, opt registry.ImportOptions) (*registry.ImportResult, error) {
		buf := make([]byte, 1000)
		for {
			if _, err := r.Read(buf); err != nil {
				return nil, err
			}
			cancel() // after the first read; the next must fail
		}
	})
	if err := demo.Seed(ctx, imp, demo.DefaultSize()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Seed = %v, want context.Canceled", err)
	}
}

func TestSeedInvalid(t *testing.T) {
	t.Parallel()
	imp := importFunc(func(ctx context.Context, r io.Reader, opt registry.ImportOptions) (*registry.ImportResult, error) {
		t.Error("imported an invalid size")
		return nil, nil
	})
	if err := demo.Seed(context.Background(), imp, demo.Size{}); err == nil {
		t.Fatal("Seed of a zero Size succeeded")
	}
}
