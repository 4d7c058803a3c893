package registry_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/demo"
	"github.com/mhero-health/mhero/registry/registrytest"
)

// BenchmarkTargetPreview measures the targeting preview (count, count by cadre and by
// county, a sample of 10) over 200,000 workers in a 5-level tree — the goal is a
// p95 under 20 ms. Each iteration runs one query from a mix a programme officer would
// send, on a random place of the right level; p50/p95/p99 are reported per mix entry.
func BenchmarkTargetPreview(b *testing.B) {
	s := registrytest.NewStore(b)
	ctx := context.Background()
	sz := demo.BenchSize(200_000)
	if err := demo.Seed(ctx, s, sz); err != nil {
		b.Fatal(err)
	}
	if _, err := s.DB().Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	levels := map[int][]string{}
	for lvl := 0; lvl <= sz.Depth; lvl++ {
		var after int64
		for {
			l := lvl
			locs, err := s.ListLocations(ctx, registry.LocationFilter{Level: &l, After: after, Limit: 1000})
			if err != nil {
				b.Fatal(err)
			}
			for _, loc := range locs {
				levels[lvl] = append(levels[lvl], loc.Code)
			}
			if len(locs) < 1000 {
				break
			}
			after = int64(locs[len(locs)-1].ID)
		}
	}
	pick := func(r *rand.Rand, lvl int) []string { return []string{levels[lvl][r.IntN(len(levels[lvl]))]} }
	mix := []struct {
		name   string
		target func(r *rand.Rand) registry.Target
	}{
		{"country", func(r *rand.Rand) registry.Target { return registry.Target{} }},
		{"county+cadre", func(r *rand.Rand) registry.Target {
			return registry.Target{Locations: pick(r, 1), Cadres: []string{"chw", "cha"}}
		}},
		{"district", func(r *rand.Rand) registry.Target { return registry.Target{Locations: pick(r, 2)} }},
		{"level4+skill", func(r *rand.Rand) registry.Target {
			return registry.Target{Locations: pick(r, 4), Skills: []string{"ebola-ipc"}}
		}},
		{"nurses-midwives-fr", func(r *rand.Rand) registry.Target {
			return registry.Target{Cadres: []string{"nurse", "midwife"}, Languages: []string{"fr"}}
		}},
		{"skill-national", func(r *rand.Rand) registry.Target {
			return registry.Target{Skills: []string{"mhpss", "imci"}}
		}},
	}
	for _, m := range mix {
		b.Run(m.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			var took []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				t := m.target(r)
				start := time.Now()
				p, err := s.PreviewTarget(ctx, t, 10)
				took = append(took, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if p.Count == 0 && m.name == "country" {
					b.Fatal("empty country")
				}
			}
			registrytest.ReportLatency(b, took)
		})
	}
}
