package store_test

import (
	"testing"

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

// BenchmarkGet measures get-by-id on every engine compiled in: compare ns/op across engines
// and, between services, across data layers.
func BenchmarkGet(b *testing.B) {
	for _, dbType := range store.Types {
		b.Run(dbType, func(b *testing.B) {
			storetest.BenchmarkGet(b, storetest.Open(b, dbType))
		})
	}
}
