package store_test

import (
	"errors"
	"testing"
	"time"

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

// TestIdempotencyRecordsExpire: the store the service runs on forgets an idempotency
// record older than IDEMPOTENCY_TTL (its key makes a new item) and sweeps such records,
// on every engine compiled in.
func TestIdempotencyRecordsExpire(t *testing.T) {
	for _, dbType := range store.Types {
		t.Run(dbType, func(t *testing.T) {
			cfg := storetest.Config(t, dbType)
			cfg.IdempotencyTTL = time.Hour
			ctx := t.Context()
			s, err := store.Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			storetest.Prepare(t, s)
			now, ttl := time.Now().UTC().Truncate(time.Microsecond), cfg.IdempotencyTTL
			create := func(key string, created time.Time) domain.Item {
				t.Helper()
				it := domain.Item{ID: uuid.Must(uuid.NewV7()).String(), Name: "n", Version: 1, CreatedAt: now, UpdatedAt: now}
				rec := &domain.IdempotencyRecord{Key: key, RequestHash: "h", ResourceID: it.ID, CreatedAt: created}
				if err := s.CreateItem(ctx, it, rec); err != nil {
					t.Fatal(err)
				}
				return it
			}

			create("expired", now.Add(-ttl-time.Minute))
			if _, err := s.GetIdempotencyRecord(ctx, "expired"); domain.KindOf(err) != domain.KindNotFound {
				t.Fatalf("an expired record: got %v, want not found", err)
			}
			fresh := create("expired", now) // the key is free again
			if rec, err := s.GetIdempotencyRecord(ctx, "expired"); err != nil || rec.ResourceID != fresh.ID {
				t.Fatalf("the key's new record: %+v, %v", rec, err)
			}
			create("live", now.Add(-ttl+time.Minute))
			if _, err := s.GetIdempotencyRecord(ctx, "live"); err != nil {
				t.Fatalf("a record inside its lifetime: %v", err)
			}

			create("swept-1", now.Add(-ttl-2*time.Minute))
			create("swept-2", now.Add(-ttl-time.Minute))
			if n, err := s.SweepIdempotencyRecords(ctx, 10); err != nil || n != 2 {
				t.Fatalf("the sweep deleted %d (%v), want the 2 expired records", n, err)
			}
			if n, err := s.SweepIdempotencyRecords(ctx, 10); err != nil || n != 0 {
				t.Fatalf("a second sweep deleted %d (%v)", n, err)
			}
		})
	}
}

// TestValuesTheDatabaseRefusesAreInvalid: a value that got past validation but that the
// database will not store (PostgreSQL refuses a NUL in text) is the caller's error (400),
// never internal; engines that store it give it back unchanged.
func TestValuesTheDatabaseRefusesAreInvalid(t *testing.T) {
	for _, dbType := range store.Types {
		t.Run(dbType, func(t *testing.T) {
			s := storetest.Open(t, dbType)
			now := time.Now().UTC().Truncate(time.Microsecond)
			it := domain.Item{ID: uuid.Must(uuid.NewV7()).String(), Name: "nul\x00inside", Version: 1, CreatedAt: now, UpdatedAt: now}
			err := s.CreateItem(t.Context(), it, nil)
			if dbType == "postgresql" && err == nil {
				t.Fatal("PostgreSQL stored a NUL in text")
			}
			if err != nil {
				if domain.KindOf(err) != domain.KindInvalid {
					t.Fatalf("a NUL in text: %v (kind %s), want invalid", err, domain.KindOf(err))
				}
				return
			}
			got, err := s.GetItem(t.Context(), it.ID)
			if err != nil || got.Name != it.Name {
				t.Fatalf("stored %q, read back %q (%v)", it.Name, got.Name, err)
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
