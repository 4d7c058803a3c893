package demo_test

import (
	"fmt"
	"io"
	"os"

	"github.com/mhero-health/mhero/registry/demo"
)

// A small country: two counties with four districts between them, four facilities, five
// workers.
func Example() {
	sz := demo.Size{Counties: 2, DistrictsPerCounty: 2, Depth: 2, Facilities: 4, Workers: 5, Seed: 42}
	if err := sz.Validate(); err != nil {
		panic(err)
	}
	fmt.Println(demo.Country(sz))
	for _, write := range []func(io.Writer, demo.Size) error{demo.WriteLocations, demo.WriteFacilities, demo.WriteWorkers} {
		if err := write(os.Stdout, sz); err != nil {
			panic(err)
		}
	}
	// Output:
	// LR (Liberia, seed 42): 1 country, 2 counties, 4 districts; 4 facilities (2 hospitals, 2 health centers, 0 clinics); 5 workers
	// code,name,parent_code
	// LR,Liberia,
	// LR-01,Bomi County,LR
	// LR-01-01,Bellu District,LR-01
	// LR-02,Bong County,LR
	// LR-02-01,Kpepa District,LR-02
	// LR-02-02,Banjama District,LR-02
	// LR-02-03,Kawee District,LR-02
	// code,name,location_code,dhis2_uid,dhis2_code
	// FAC-0001,Bellu Hospital,LR-01-01,zK6tU9xEGwi,OU_100001
	// FAC-0002,Kpepa Hospital,LR-02-01,jdEHxuebmue,OU_100002
	// FAC-0003,Banjama Health Center,LR-02-02,P5Qfk4mGqkv,OU_100003
	// FAC-0004,Kawee Health Center,LR-02-03,a5NQhwQEYKK,OU_100004
	// ihris_id,name,phone,phone2,cadre,facility_code,skills,language,active,opted_out
	// ihris-000001,Annie Fofana,+231772118265,,chw,FAC-0001,ebola-ipc;malaria-rdt,en,true,false
	// ihris-000002,Saye Karmo,+231771617793,,doctor,FAC-0001,mhpss,en,true,false
	// ihris-000003,Bendu Dolo,0770460131,,chw,FAC-0003,ebola-ipc;imci;malaria-rdt,fr,true,false
	// ihris-000004,Agnes M. Gaye,+231884531702,,chw,FAC-0001,,en,true,false
	// ihris-000005,Kerkula Kiazolu,0885190511,,chw,FAC-0003,ebola-ipc;fp,fr,true,false
}

// The country `make run` seeds.
func ExampleCountry() {
	fmt.Println(demo.Country(demo.DefaultSize()))
	// Output:
	// LR (Liberia, seed 1): 1 country, 15 counties, 90 districts; 800 facilities (31 hospitals, 153 health centers, 616 clinics); 10,000 workers
}
