package smpp

import (
	"fmt"
	"sort"

	"github.com/mhero-health/mhero"
)

// router maps an MSISDN to its MNO by the longest matching prefix.
type router struct {
	routes []route // longest prefix first
}

type route struct {
	prefix string // digits, no '+'
	mno    string
}

// newRouter builds the prefix table; the same prefix on two MNOs is a config error.
func newRouter(cfgs []Config) (*router, error) {
	owner := make(map[string]string)
	r := &router{}
	for _, c := range cfgs {
		for _, p := range c.Prefixes {
			if o, ok := owner[p]; ok && o != c.Name {
				return nil, fmt.Errorf("prefix %q is routed to both %q and %q", p, o, c.Name)
			} else if ok {
				continue
			}
			owner[p] = c.Name
			r.routes = append(r.routes, route{prefix: p, mno: c.Name})
		}
	}
	sort.SliceStable(r.routes, func(i, j int) bool { return len(r.routes[i].prefix) > len(r.routes[j].prefix) })
	return r, nil
}

// lookup returns the MNO serving m, or an error wrapping ErrUnroutable.
func (r *router) lookup(m mhero.MSISDN) (string, error) {
	s := string(m)
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	if s == "" {
		return "", fmt.Errorf("route: empty number: %w", ErrUnroutable)
	}
	for _, rt := range r.routes {
		if len(s) >= len(rt.prefix) && s[:len(rt.prefix)] == rt.prefix {
			return rt.mno, nil
		}
	}
	return "", fmt.Errorf("route %s: %w", mhero.MaskDigits(s), ErrUnroutable)
}
