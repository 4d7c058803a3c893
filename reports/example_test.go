package reports_test

import (
	"fmt"

	"github.com/mhero-health/mhero/reports"
)

// Views take DHIS2 periods and cover the half-open range they name.
func ExampleParsePeriod() {
	for _, s := range []string{"2026W48", "202611", "2026Q4", "2026", "2026W01", "2026-11"} {
		p, err := reports.ParsePeriod(s, nil)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%-8s %-7s %s .. %s\n", p, p.Type, p.Start.Format("2006-01-02"), p.End.Format("2006-01-02"))
	}
	// Output:
	// 2026W48  week    2026-11-23 .. 2026-11-30
	// 202611   month   2026-11-01 .. 2026-12-01
	// 2026Q4   quarter 2026-10-01 .. 2027-01-01
	// 2026     year    2026-01-01 .. 2027-01-01
	// 2026W1   week    2025-12-29 .. 2026-01-05
	// mhero invalid: Period "2026-11" is not a DHIS2 period. (1 details)
}
