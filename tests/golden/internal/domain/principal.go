package domain

import "context"

// Principal is the authenticated caller of a request: the subject of its token and the
// scopes it grants. Transports put it on the context after authentication; the service
// layer reads it (idempotency keys are scoped to the subject, audit records name it).
type Principal struct {
	Subject string
	Scopes  []string
}

// Anonymous is the subject of requests made without authentication (development, or
// routes that need no token).
const Anonymous = "anonymous"

type principalKey struct{}

// NewContextWithPrincipal returns ctx carrying p.
func NewContextWithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFromContext returns the caller on ctx, or the anonymous principal.
func PrincipalFromContext(ctx context.Context) Principal {
	if p, ok := ctx.Value(principalKey{}).(Principal); ok && p.Subject != "" {
		return p
	}
	return Principal{Subject: Anonymous}
}
