package mhero

import "context"

type contextKey int

const principalKey contextKey = iota

// NewContextWithPrincipal returns a copy of ctx carrying the API caller. Stores read it to
// enforce a key's location scope and to write the audit log, so neither can be forgotten
// by a handler.
func NewContextWithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey, p)
}

// PrincipalFromContext returns the caller, or nil for trusted internal callers (CLI,
// background jobs), which are unscoped.
func PrincipalFromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey).(*Principal)
	return p
}
