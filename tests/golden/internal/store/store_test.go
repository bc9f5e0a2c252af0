package store_test

import (
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store"
	"github.com/example/my-service/internal/store/storetest"
)

// TestContract holds every engine compiled in, through the sqlc data layer, to the
// store contract, each in a fresh database.
func TestContract(t *testing.T) {
	for _, dbType := range store.Types {
		t.Run(dbType, func(t *testing.T) {
			storetest.Run(t, storetest.Open(t, dbType))
		})
	}
}

// TestReadOnlyDatabaseIsUnavailable holds every engine compiled in to the rules for a
// database that stopped taking writes: a write is unavailable (503), never internal, and
// Ping, which readiness runs, fails with the reason.
func TestReadOnlyDatabaseIsUnavailable(t *testing.T) {
	for _, dbType := range store.Types {
		t.Run(dbType, func(t *testing.T) {
			s := storetest.OpenReadOnly(t, dbType)
			err := s.DeleteItem(t.Context(), uuid.NewString())
			if domain.KindOf(err) != domain.KindUnavailable {
				t.Fatalf("a write: %v (kind %s), want unavailable", err, domain.KindOf(err))
			}
			var de *domain.Error
			if err := s.Ping(t.Context()); !errors.As(err, &de) || de.Kind != domain.KindUnavailable || de.Message != "refuses writes" {
				t.Fatalf("Ping: %v, want an unavailable error that says the database refuses writes", err)
			}
		})
	}
}

// BenchmarkGet measures get-by-id on every engine compiled in: compare ns/op across engines
// and, between services, across data layers.
func BenchmarkGet(b *testing.B) {
	for _, dbType := range store.Types {
		b.Run(dbType, func(b *testing.B) {
			storetest.BenchmarkGet(b, storetest.Open(b, dbType))
		})
	}
}
