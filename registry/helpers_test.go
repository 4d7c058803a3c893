package registry_test

import (
	"strconv"
	"strings"

	"github.com/mhero-health/mhero"
)

func registryPath(ids ...mhero.LocationID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(int64(id), 10)
	}
	return strings.Join(s, "/")
}
