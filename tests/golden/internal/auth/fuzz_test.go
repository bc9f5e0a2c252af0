package auth

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/domain"
)

// FuzzAuthorize feeds arbitrary Authorization headers: never a panic, never a caller let
// in without a valid token, and only the two auth kinds as errors.
func FuzzAuthorize(f *testing.F) {
	for _, seed := range []string{"", "Bearer", "Bearer ", "bearer a.b.c", "Basic dXNlcjpwYXNz",
		"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "BEARER  x"} {
		f.Add(seed)
	}
	p, err := New(context.Background(), config.Auth{JWTSecret: strings.Repeat("k", 32)}, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string) {
		got, err := p.Authorize(header, WriteScope)
		if err == nil {
			t.Fatalf("%q let in %v without a signed token", header, got)
		}
		if k := domain.KindOf(err); k != domain.KindUnauthorized && k != domain.KindForbidden {
			t.Fatalf("kind %s: %v", k, err)
		}
		if token, err := BearerToken(header); err == nil && (token == "" || strings.ContainsAny(token, " \t")) {
			t.Fatalf("%q gave token %q", header, token)
		}
	})
}
