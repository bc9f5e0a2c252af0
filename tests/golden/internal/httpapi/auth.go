package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/telemetry"
)

// authenticate puts the caller on the request context when it may use an endpoint that
// needs scope (the policy is internal/auth): 401 without a valid token where one is
// needed, 403 without the scope. Every refusal is an audit record; action names the
// endpoint in it.
func authenticate(d Deps, action, scope string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := d.Policy.Authorize(r.Header.Get("Authorization"), scope)
			if err != nil {
				d.Audit.Record(r.Context(), telemetry.AuditEvent{
					Subject: domain.Anonymous, Action: action, Outcome: "denied",
					Status: strconv.Itoa(statusOf(err)), Transport: "http", ClientIP: clientIP(r.Context()),
				})
				writeError(w, r, d.Logger, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(domain.NewContextWithPrincipal(r.Context(), p)))
		})
	}
}

// audited writes one audit record per call of a write endpoint: who, what, which
// resource (the {id} of the path, or the Location a create answered with) and the
// outcome.
func audited(d Deps, action string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		id := r.PathValue("id")
		if loc := w.Header().Get("Location"); id == "" && loc != "" {
			id = loc[strings.LastIndex(loc, "/")+1:]
		}
		resource := ""
		if id != "" {
			resource = "items/" + id
		}
		outcome := "success"
		if status >= http.StatusBadRequest {
			outcome = "failure"
		}
		d.Audit.Record(r.Context(), telemetry.AuditEvent{
			Subject: domain.PrincipalFromContext(r.Context()).Subject, Action: action, Resource: resource,
			Outcome: outcome, Status: strconv.Itoa(status), Transport: "http", ClientIP: clientIP(r.Context()),
		})
	})
}
