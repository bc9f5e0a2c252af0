// Package auth verifies bearer tokens and decides what a caller may do. Both transports
// use it, so REST and gRPC answer the same token the same way.
package auth

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/domain"
)

// The scopes a token grants, OAuth2-style: writes always need WriteScope; reads need
// ReadScope only when AUTH_PROTECT_READS is set.
const (
	ReadScope  = "items:read"
	WriteScope = "items:write"
)

// claims are the JWT claims the service reads: the registered ones plus the granted
// scopes, as a space-separated "scope" string (RFC 8693) or an "scp" list.
type claims struct {
	Scope string   `json:"scope"`
	Scp   []string `json:"scp"`
	jwt.RegisteredClaims
}

func (c claims) scopes() []string {
	return append(strings.Fields(c.Scope), c.Scp...)
}

// Policy authenticates callers and checks their scopes. With no verifier configured
// (allowed only when APP_ENV=development, see config.Validate) every caller is anonymous
// and allowed.
type Policy struct {
	parser       *jwt.Parser
	secret       []byte          // HS256, when JWT_SECRET is set
	jwks         keyfunc.Keyfunc // RS256/ES256, when JWT_JWKS_URL is set
	protectReads bool
}

// New returns the policy for cfg. With a JWKS URL it starts a goroutine, stopped with
// ctx, that refreshes the key set every cfg.JWKSRefresh and when a token names an
// unknown key (rate-limited), so keys rotate without a restart. An unreachable JWKS at
// start-up is not fatal: tokens are refused (401) until the keys arrive.
func New(ctx context.Context, cfg config.Auth, logger *slog.Logger) (*Policy, error) {
	p := &Policy{protectReads: cfg.ProtectReads}
	if !cfg.Enabled() {
		return p, nil
	}
	var methods []string
	if cfg.JWTSecret != "" {
		p.secret = []byte(cfg.JWTSecret)
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if cfg.JWKSURL != "" {
		jwks, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
			HTTPTimeout:       2 * time.Second,
			RefreshInterval:   cfg.JWKSRefresh,
			RefreshUnknownKID: rate.NewLimiter(rate.Every(10*time.Second), 1),
			// This bounds the limiter wait and the refresh together. Shorter than the refresh
			// interval, so a request never waits for the limiter (it fails at once when no
			// refresh is due: tokens naming made-up keys cannot hold requests), and a due
			// refresh gets the fetch timeout. The library's default waits up to a minute.
			RateLimitWaitMax: 2 * time.Second,
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(ctx context.Context, err error) {
					logger.ErrorContext(ctx, "refreshing the JWKS failed", "url", u, "err", err.Error())
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("JWT_JWKS_URL: %w", err)
		}
		p.jwks = jwks
		methods = append(methods, "RS256", "ES256")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(30 * time.Second),
	}
	if cfg.JWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.JWTIssuer))
	}
	if cfg.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(cfg.JWTAudience))
	}
	p.parser = jwt.NewParser(opts...)
	return p, nil
}

// Enabled reports whether callers are authenticated at all.
func (p *Policy) Enabled() bool { return p.parser != nil }

// key picks the verification key by the token's algorithm, so a public key from the JWKS
// can never be used as an HMAC secret (algorithm confusion).
func (p *Policy) key(t *jwt.Token) (any, error) {
	if t.Method.Alg() == jwt.SigningMethodHS256.Alg() {
		return p.secret, nil // WithValidMethods admits HS256 only when a secret is set
	}
	return p.jwks.Keyfunc(t)
}

// Authorize returns the caller behind an Authorization header value when it may do an
// operation that needs scope: KindUnauthorized without a valid token where one is
// needed, KindForbidden when the token lacks the scope. A token sent where none is
// needed is still checked, so a caller learns its token is bad.
func (p *Policy) Authorize(header, scope string) (domain.Principal, error) {
	anonymous := domain.Principal{Subject: domain.Anonymous}
	if p.parser == nil {
		return anonymous, nil
	}
	required := scope == WriteScope || p.protectReads
	if header == "" {
		if !required {
			return anonymous, nil
		}
		return domain.Principal{}, domain.Errorf(domain.KindUnauthorized, "a bearer token is required")
	}
	raw, err := BearerToken(header)
	if err != nil {
		return domain.Principal{}, err
	}
	var c claims
	if _, err := p.parser.ParseWithClaims(raw, &c, p.key); err != nil {
		return domain.Principal{}, domain.Wrap(domain.KindUnauthorized, err, "the bearer token is not valid")
	}
	if c.Subject == "" {
		return domain.Principal{}, domain.Errorf(domain.KindUnauthorized, "the bearer token names no subject")
	}
	scopes := c.scopes()
	if required && !slices.Contains(scopes, scope) {
		return domain.Principal{}, domain.Errorf(domain.KindForbidden, "the token lacks the %q scope", scope)
	}
	return domain.Principal{Subject: c.Subject, Scopes: scopes}, nil
}

// maxTokenBytes bounds the token a caller may send; real JWTs are far smaller.
const maxTokenBytes = 8192

// BearerToken returns the token of an Authorization header value "Bearer <token>". The
// scheme is case-insensitive (RFC 7235); anything else is KindUnauthorized.
func BearerToken(header string) (string, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	token = strings.TrimLeft(token, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", domain.Errorf(domain.KindUnauthorized, `the Authorization header must be "Bearer <token>"`)
	}
	if len(token) > maxTokenBytes {
		return "", domain.Errorf(domain.KindUnauthorized, "the bearer token is longer than %d bytes", maxTokenBytes)
	}
	return token, nil
}
