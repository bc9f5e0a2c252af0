package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/example/my-service/internal/auth"
	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/domain"
)

var secret = strings.Repeat("s", 32)

func newPolicy(t *testing.T, cfg config.Auth) *auth.Policy {
	t.Helper()
	p, err := auth.New(t.Context(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + s
}

func claims(sub, scope string, ttl time.Duration) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "scope": scope, "exp": time.Now().Add(ttl).Unix()}
}

func wantKind(t *testing.T, err error, kind domain.Kind) {
	t.Helper()
	if got := domain.KindOf(err); err == nil || got != kind {
		t.Fatalf("got %v (%s), want %s", err, got, kind)
	}
}

func TestDevelopmentPolicyLetsEveryoneIn(t *testing.T) {
	p := newPolicy(t, config.Auth{})
	if p.Enabled() {
		t.Fatal("enabled without a secret or JWKS")
	}
	got, err := p.Authorize("", auth.WriteScope)
	if err != nil || got.Subject != domain.Anonymous {
		t.Fatalf("%v %v", got, err)
	}
}

func TestHS256(t *testing.T) {
	p := newPolicy(t, config.Auth{JWTSecret: secret, JWTIssuer: "iss", JWTAudience: "aud"})
	good := jwt.MapClaims{"sub": "alice", "scope": auth.WriteScope, "iss": "iss", "aud": "aud", "exp": time.Now().Add(time.Hour).Unix()}
	got, err := p.Authorize(sign(t, jwt.SigningMethodHS256, []byte(secret), "", good), auth.WriteScope)
	if err != nil || got.Subject != "alice" {
		t.Fatalf("good token: %v %v", got, err)
	}
	for name, c := range map[string]jwt.MapClaims{
		"expired":      {"sub": "a", "scope": auth.WriteScope, "iss": "iss", "aud": "aud", "exp": time.Now().Add(-time.Hour).Unix()},
		"no expiry":    {"sub": "a", "scope": auth.WriteScope, "iss": "iss", "aud": "aud"},
		"wrong issuer": {"sub": "a", "scope": auth.WriteScope, "iss": "x", "aud": "aud", "exp": time.Now().Add(time.Hour).Unix()},
		"wrong aud":    {"sub": "a", "scope": auth.WriteScope, "iss": "iss", "aud": "x", "exp": time.Now().Add(time.Hour).Unix()},
		"no subject":   {"scope": auth.WriteScope, "iss": "iss", "aud": "aud", "exp": time.Now().Add(time.Hour).Unix()},
	} {
		_, err := p.Authorize(sign(t, jwt.SigningMethodHS256, []byte(secret), "", c), auth.WriteScope)
		if domain.KindOf(err) != domain.KindUnauthorized {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err = p.Authorize(sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), "", good), auth.WriteScope)
	wantKind(t, err, domain.KindUnauthorized)
	readOnly := jwt.MapClaims{"sub": "a", "scope": auth.ReadScope, "iss": "iss", "aud": "aud", "exp": time.Now().Add(time.Hour).Unix()}
	_, err = p.Authorize(sign(t, jwt.SigningMethodHS256, []byte(secret), "", readOnly), auth.WriteScope)
	wantKind(t, err, domain.KindForbidden)
	// The scp list form grants scopes too.
	scp := jwt.MapClaims{"sub": "a", "scp": []string{auth.WriteScope}, "iss": "iss", "aud": "aud", "exp": time.Now().Add(time.Hour).Unix()}
	if _, err := p.Authorize(sign(t, jwt.SigningMethodHS256, []byte(secret), "", scp), auth.WriteScope); err != nil {
		t.Fatalf("scp: %v", err)
	}
}

func TestReadsAreOpenUnlessProtected(t *testing.T) {
	open := newPolicy(t, config.Auth{JWTSecret: secret})
	if _, err := open.Authorize("", auth.ReadScope); err != nil {
		t.Fatalf("open read: %v", err)
	}
	// A bad token is refused even where none is needed.
	_, err := open.Authorize("Bearer nonsense", auth.ReadScope)
	wantKind(t, err, domain.KindUnauthorized)
	protected := newPolicy(t, config.Auth{JWTSecret: secret, ProtectReads: true})
	_, err = protected.Authorize("", auth.ReadScope)
	wantKind(t, err, domain.KindUnauthorized)
	_, err = protected.Authorize(sign(t, jwt.SigningMethodHS256, []byte(secret), "", claims("a", auth.WriteScope, time.Hour)), auth.ReadScope)
	wantKind(t, err, domain.KindForbidden)
	if _, err := protected.Authorize(sign(t, jwt.SigningMethodHS256, []byte(secret), "", claims("a", auth.ReadScope, time.Hour)), auth.ReadScope); err != nil {
		t.Fatalf("read scope: %v", err)
	}
}

func TestBearerScheme(t *testing.T) {
	p := newPolicy(t, config.Auth{JWTSecret: secret})
	tok := strings.TrimPrefix(sign(t, jwt.SigningMethodHS256, []byte(secret), "", claims("a", auth.WriteScope, time.Hour)), "Bearer ")
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		if _, err := p.Authorize(scheme+" "+tok, auth.WriteScope); err != nil {
			t.Errorf("scheme %q: %v", scheme, err)
		}
	}
	for _, h := range []string{"Basic " + tok, tok, "Bearer", "Bearer ", "Bearer a b", "Bearer " + strings.Repeat("a", 9000)} {
		_, err := p.Authorize(h, auth.WriteScope)
		wantKind(t, err, domain.KindUnauthorized)
	}
}

func TestAlgNoneAndConfusionAreRefused(t *testing.T) {
	rsaKey := mustRSA(t)
	jwks := newJWKSServer(t)
	jwks.set(jwkRSA("r1", &rsaKey.PublicKey))
	p := newPolicy(t, config.Auth{JWTSecret: secret, JWKSURL: jwks.URL(), JWKSRefresh: time.Hour})
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims("a", auth.WriteScope, time.Hour))
	_, err := p.Authorize(none, auth.WriteScope)
	wantKind(t, err, domain.KindUnauthorized)
	// HS256 signed with the public key's bytes: never verified against the JWKS.
	pub, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Authorize(sign(t, jwt.SigningMethodHS256, pub, "r1", claims("a", auth.WriteScope, time.Hour)), auth.WriteScope)
	wantKind(t, err, domain.KindUnauthorized)
	// Without a secret, HS256 is not accepted at all.
	jwksOnly := newPolicy(t, config.Auth{JWKSURL: jwks.URL(), JWKSRefresh: time.Hour})
	_, err = jwksOnly.Authorize(sign(t, jwt.SigningMethodHS256, []byte(secret), "", claims("a", auth.WriteScope, time.Hour)), auth.WriteScope)
	wantKind(t, err, domain.KindUnauthorized)
}

// Keys rotate without a restart: a token naming a new key makes the policy re-read the
// JWKS, and a key removed from the JWKS stops working at the next refresh.
func TestJWKSRotation(t *testing.T) {
	rsaOld, ecNew := mustRSA(t), mustEC(t)
	jwks := newJWKSServer(t)
	jwks.set(jwkRSA("old", &rsaOld.PublicKey))
	p := newPolicy(t, config.Auth{JWKSURL: jwks.URL(), JWKSRefresh: 200 * time.Millisecond})

	got, err := p.Authorize(sign(t, jwt.SigningMethodRS256, rsaOld, "old", claims("svc-a", auth.WriteScope, time.Hour)), auth.WriteScope)
	if err != nil || got.Subject != "svc-a" {
		t.Fatalf("RS256: %v %v", got, err)
	}
	jwks.set(jwkEC("new", &ecNew.PublicKey))
	got, err = p.Authorize(sign(t, jwt.SigningMethodES256, ecNew, "new", claims("svc-b", auth.WriteScope, time.Hour)), auth.WriteScope)
	if err != nil || got.Subject != "svc-b" {
		t.Fatalf("ES256 with a new key: %v %v", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = p.Authorize(sign(t, jwt.SigningMethodRS256, rsaOld, "old", claims("svc-a", auth.WriteScope, time.Hour)), auth.WriteScope)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a key removed from the JWKS still verifies tokens")
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantKind(t, err, domain.KindUnauthorized)
	// A token signed by a key the JWKS never had is refused.
	_, err = p.Authorize(sign(t, jwt.SigningMethodRS256, mustRSA(t), "stranger", claims("x", auth.WriteScope, time.Hour)), auth.WriteScope)
	wantKind(t, err, domain.KindUnauthorized)
}

func TestUnreachableJWKSRefusesTokensButStarts(t *testing.T) {
	p := newPolicy(t, config.Auth{JWKSURL: "http://127.0.0.1:1/jwks.json", JWKSRefresh: time.Hour})
	_, err := p.Authorize(sign(t, jwt.SigningMethodRS256, mustRSA(t), "k", claims("a", auth.WriteScope, time.Hour)), auth.WriteScope)
	wantKind(t, err, domain.KindUnauthorized)
}

type jwksServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	keys []map[string]string
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) URL() string { return s.srv.URL + "/jwks.json" }

func (s *jwksServer) set(keys ...map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwkRSA(kid string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func jwkEC(kid string, k *ecdsa.PublicKey) map[string]string {
	point, err := k.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	size := (len(point) - 1) / 2
	return map[string]string{"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
		"x": b64(point[1 : 1+size]), "y": b64(point[1+size:])}
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
