package httpapi

import (
	"net/http"

	"github.com/example/my-service/internal/auth"
)

// endpoints is the map of the API: every endpoint is here, with the middleware it needs.
// Patterns use net/http syntax ({id}); router.go mounts them on the router.
func endpoints(d Deps) []endpoint {
	// guard is what every API endpoint passes, in order: who is calling and may they
	// (401/403, internal/auth), how often (429), the body (413/408), then the deadline
	// for the work itself.
	guard := func(action, scope string) func(http.Handler) http.Handler {
		return chain(
			authenticate(d, action, scope),
			rateLimit(d.Logger, d.Limiter),
			readBody(d.Logger, d.HTTP.MaxBodyBytes, d.HTTP.BodyReadTimeout),
			deadline(d.HTTP.RequestTimeout),
		)
	}
	read := func(action string, h http.Handler) http.Handler { return guard(action, auth.ReadScope)(h) }
	// Writes also leave an audit record.
	write := func(action string, h http.Handler) http.Handler {
		return guard(action, auth.WriteScope)(audited(d, action, h))
	}
	const items = "/api/v1/items"

	return []endpoint{
		{http.MethodGet, "/livez", handleLivez(d.Logger)},
		{http.MethodGet, "/readyz", handleReadyz(d.Logger, d.Health)},

		{http.MethodGet, items, read("items.list", handleItemList(d.Logger, d.Items))},
		{http.MethodGet, items + "/{id}", read("items.get", handleItemGet(d.Logger, d.Items))},
		{http.MethodPost, items, write("items.create", handleItemCreate(d.Logger, d.Items))},
		{http.MethodPut, items + "/{id}", write("items.update", handleItemUpdate(d.Logger, d.Items))},
		{http.MethodDelete, items + "/{id}", write("items.delete", handleItemDelete(d.Logger, d.Items))},
	}
}
