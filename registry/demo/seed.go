package demo

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/mhero-health/mhero/registry"
)

// Importer takes one CSV file of the registry's import formats; *registry.Store is one.
type Importer interface {
	Import(ctx context.Context, r io.Reader, opt registry.ImportOptions) (*registry.ImportResult, error)
}

// errStopped is what the writer sees when the importer returned without reading to the end.
var errStopped = errors.New("demo: the importer stopped reading before the end of the file")

// Seed imports the country sz makes: locations, then facilities, then workers, each
// streamed through a pipe (nothing is held in memory whole) with Source "demo". Imports
// are upserts, so seeding twice with the same Size changes nothing. It stops at the first
// error or when ctx is done, and returns only once its writer goroutine has ended.
func Seed(ctx context.Context, imp Importer, sz Size) error {
	if err := sz.Validate(); err != nil {
		return err
	}
	steps := []struct {
		what  string
		write func(io.Writer, Size) error
	}{
		{"locations", WriteLocations},
		{"facilities", WriteFacilities},
		{"workers", WriteWorkers},
	}
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := seedOne(ctx, imp, sz, st.write); err != nil {
			return fmt.Errorf("demo: seeding %s: %w", st.what, err)
		}
	}
	return nil
}

func seedOne(ctx context.Context, imp Importer, sz Size, write func(io.Writer, Size) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := write(pw, sz)
		pw.CloseWithError(err) // nil: the importer reads io.EOF
		done <- err
	}()
	// On cancellation the importer's next read fails with the context's error, and the
	// writer's next write fails: both sides stop.
	stop := context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	defer stop()

	_, err := imp.Import(ctx, pr, registry.ImportOptions{Source: "demo"})
	pr.CloseWithError(errStopped) // unblocks the writer if the importer left early
	werr := <-done
	switch {
	case err != nil:
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return werr // errStopped if the importer left early
}
