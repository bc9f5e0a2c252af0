package httpapi

import "net/http"

// endpoints is the map of the API: every endpoint is here, with the middleware it needs.
// Patterns use net/http syntax ({id}); router.go mounts them on the router.
func endpoints(d Deps) []endpoint {
	api := chain(
		limitBody(d.Logger, d.HTTP.MaxBodyBytes),
		rateLimit(d.Logger, newClientLimiter(d.RateLimit.RPS, d.RateLimit.Burst)),
		deadline(d.HTTP.RequestTimeout),
	)
	write := requireScope(d.Logger, d.Auth, writeScope)
	const items = "/api/v1/items"

	return []endpoint{
		{http.MethodGet, "/livez", handleLivez(d.Logger)},
		{http.MethodGet, "/readyz", handleReadyz(d.Logger, d.Health)},

		{http.MethodGet, items, api(handleItemList(d.Logger, d.Items))},
		{http.MethodGet, items + "/{id}", api(handleItemGet(d.Logger, d.Items))},
		{http.MethodPost, items, api(write(handleItemCreate(d.Logger, d.Items)))},
		{http.MethodPut, items + "/{id}", api(write(handleItemUpdate(d.Logger, d.Items)))},
		{http.MethodDelete, items + "/{id}", api(write(handleItemDelete(d.Logger, d.Items)))},
	}
}
