package httpapi

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/domain"
)

// writeScope is the JWT scope that allows changing items.
const writeScope = "items:write"

// claims are the JWT claims the service reads: the registered ones plus a space-separated
// OAuth2-style scope.
type claims struct {
	Scope string `json:"scope"`
	jwt.RegisteredClaims
}

// requireScope lets a request through when it carries a valid HS256 bearer token with
// scope; 401 without a valid token, 403 without the scope. With no JWT_SECRET configured
// it lets every request through (development).
func requireScope(logger *slog.Logger, cfg config.Auth, scope string) func(http.Handler) http.Handler {
	if cfg.JWTSecret == "" {
		return func(next http.Handler) http.Handler { return next }
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(30 * time.Second),
	}
	if cfg.JWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.JWTIssuer))
	}
	if cfg.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(cfg.JWTAudience))
	}
	parser := jwt.NewParser(opts...)
	key := []byte(cfg.JWTSecret)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || raw == "" {
				writeError(w, r, logger, domain.Errorf(domain.KindUnauthorized, "a bearer token is required"))
				return
			}
			var c claims
			if _, err := parser.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
				writeError(w, r, logger, domain.Errorf(domain.KindUnauthorized, "the bearer token is not valid"))
				return
			}
			if !slices.Contains(strings.Fields(c.Scope), scope) {
				writeError(w, r, logger, domain.Errorf(domain.KindForbidden, "the token lacks the %q scope", scope))
				return
			}
			logger.InfoContext(r.Context(), "audit", "subject", c.Subject, "method", r.Method, "path", r.URL.Path)
			ctx := domain.NewContextWithPrincipal(r.Context(), domain.Principal{Subject: c.Subject, Scopes: strings.Fields(c.Scope)})
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
