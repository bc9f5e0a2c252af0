// Package storetest is the contract every store adapter must meet. The store package's
// tests call Run for every engine compiled in, so all engines and the data layer are held
// to the same behaviour. Add your own resources' cases here: this file belongs to the
// service's team (open.go, which makes the test databases, is the template's).
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/service"
	"github.com/example/my-service/internal/store"
)

// Lifecycle is the part of an adapter Prepare needs.
type Lifecycle interface {
	Ping(ctx context.Context) error
	Migrate(ctx context.Context) error
}

// Prepare checks that s answers and migrates it twice (the second run must be a no-op).
func Prepare(tb testing.TB, s Lifecycle) {
	tb.Helper()
	if err := s.Ping(context.Background()); err != nil {
		tb.Fatal(err)
	}
	for range 2 {
		if err := s.Migrate(context.Background()); err != nil {
			tb.Fatal(err)
		}
	}
}

// Run exercises s, a freshly migrated and empty adapter.
func Run(t *testing.T, s store.Adapter) {
	t.Helper()
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Microsecond)

	newItem := func(name string) domain.Item {
		return domain.Item{ID: uuid.Must(uuid.NewV7()).String(), Name: name, Version: 1, CreatedAt: now, UpdatedAt: now}
	}

	t.Run("create and get", func(t *testing.T) {
		it := newItem("first")
		it.Description = "with a description"
		mustOK(t, s.CreateItem(ctx, it, nil))
		got, err := s.GetItem(ctx, it.ID)
		mustOK(t, err)
		if got.ID != it.ID || got.Name != it.Name || got.Description != it.Description || got.Version != 1 {
			t.Fatalf("got %+v, want %+v", got, it)
		}
		if !got.CreatedAt.Equal(now) || !got.UpdatedAt.Equal(now) {
			t.Fatalf("timestamps: got %v/%v, want %v", got.CreatedAt, got.UpdatedAt, now)
		}
	})

	t.Run("duplicate id is a conflict", func(t *testing.T) {
		it := newItem("dup")
		mustOK(t, s.CreateItem(ctx, it, nil))
		mustKind(t, s.CreateItem(ctx, it, nil), domain.KindConflict)
	})

	t.Run("missing is not found", func(t *testing.T) {
		missing := uuid.Must(uuid.NewV7()).String()
		_, err := s.GetItem(ctx, missing)
		mustKind(t, err, domain.KindNotFound)
		mustKind(t, s.DeleteItem(ctx, missing), domain.KindNotFound)
		_, err = s.UpdateItem(ctx, domain.Item{ID: missing, Name: "x", UpdatedAt: now}, 1)
		mustKind(t, err, domain.KindNotFound)
		_, err = s.GetIdempotencyRecord(ctx, "no-such-key")
		mustKind(t, err, domain.KindNotFound)
	})

	t.Run("idempotency record is written with the item, once", func(t *testing.T) {
		it := newItem("idem")
		rec := &domain.IdempotencyRecord{Key: "k-" + it.ID, RequestHash: "h", ResourceID: it.ID, CreatedAt: now}
		mustOK(t, s.CreateItem(ctx, it, rec))
		got, err := s.GetIdempotencyRecord(ctx, rec.Key)
		mustOK(t, err)
		if got.ResourceID != it.ID || got.RequestHash != "h" {
			t.Fatalf("record: got %+v", got)
		}
		// The same key again fails as a whole: the second item is not kept.
		other := newItem("idem-2")
		rec2 := &domain.IdempotencyRecord{Key: rec.Key, RequestHash: "h2", ResourceID: other.ID, CreatedAt: now}
		mustKind(t, s.CreateItem(ctx, other, rec2), domain.KindConflict)
		_, err = s.GetItem(ctx, other.ID)
		mustKind(t, err, domain.KindNotFound)
	})

	// Records created before cutoff have expired (the store above the adapter decides when).
	cutoff := now.Add(-time.Hour)
	record := func(it domain.Item, key string, created time.Time) *domain.IdempotencyRecord {
		return &domain.IdempotencyRecord{Key: key, RequestHash: "h", ResourceID: it.ID, CreatedAt: created}
	}

	t.Run("an expired idempotency record is deleted, a live one kept", func(t *testing.T) {
		old, young := newItem("old"), newItem("young")
		mustOK(t, s.CreateItem(ctx, old, record(old, "old-"+old.ID, cutoff.Add(-time.Minute))))
		mustOK(t, s.CreateItem(ctx, young, record(young, "young-"+young.ID, cutoff.Add(time.Minute))))
		mustOK(t, s.DeleteExpiredIdempotencyRecord(ctx, "young-"+young.ID, cutoff))
		_, err := s.GetIdempotencyRecord(ctx, "young-"+young.ID)
		mustOK(t, err)
		mustOK(t, s.DeleteExpiredIdempotencyRecord(ctx, "old-"+old.ID, cutoff))
		_, err = s.GetIdempotencyRecord(ctx, "old-"+old.ID)
		mustKind(t, err, domain.KindNotFound)
		mustOK(t, s.DeleteExpiredIdempotencyRecord(ctx, "no-such-key", cutoff))
		// The key is free again, and the item it named stays.
		again := newItem("again")
		mustOK(t, s.CreateItem(ctx, again, record(again, "old-"+old.ID, now)))
		_, err = s.GetItem(ctx, old.ID)
		mustOK(t, err)
	})

	t.Run("expired idempotency records are swept in batches, oldest first", func(t *testing.T) {
		var keys []string // oldest first
		for i := range 3 {
			it := newItem(fmt.Sprintf("sweep-%d", i))
			keys = append(keys, "sweep-"+it.ID)
			mustOK(t, s.CreateItem(ctx, it, record(it, keys[i], cutoff.Add(time.Duration(i-3)*time.Minute))))
		}
		live := newItem("live")
		mustOK(t, s.CreateItem(ctx, live, record(live, "live-"+live.ID, now)))
		n, err := s.DeleteExpiredIdempotencyRecords(ctx, cutoff, 2)
		mustOK(t, err)
		if n != 2 {
			t.Fatalf("first batch deleted %d, want 2", n)
		}
		for i, key := range keys {
			_, err := s.GetIdempotencyRecord(ctx, key)
			if i < 2 {
				mustKind(t, err, domain.KindNotFound)
			} else {
				mustOK(t, err) // the youngest expired record waits for the next batch
			}
		}
		for _, want := range []int64{1, 0} {
			n, err := s.DeleteExpiredIdempotencyRecords(ctx, cutoff, 2)
			mustOK(t, err)
			if n != want {
				t.Fatalf("a later batch deleted %d, want %d", n, want)
			}
		}
		_, err = s.GetIdempotencyRecord(ctx, "live-"+live.ID)
		mustOK(t, err)
	})

	t.Run("update checks the version", func(t *testing.T) {
		it := newItem("v1")
		mustOK(t, s.CreateItem(ctx, it, nil))
		later := now.Add(time.Second)
		upd, err := s.UpdateItem(ctx, domain.Item{ID: it.ID, Name: "v2", Description: "d", UpdatedAt: later}, 1)
		mustOK(t, err)
		if upd.Version != 2 || upd.Name != "v2" || !upd.UpdatedAt.Equal(later) || !upd.CreatedAt.Equal(now) {
			t.Fatalf("updated: got %+v", upd)
		}
		_, err = s.UpdateItem(ctx, domain.Item{ID: it.ID, Name: "stale", UpdatedAt: later}, 1)
		mustKind(t, err, domain.KindNotFound)
	})

	t.Run("delete", func(t *testing.T) {
		it := newItem("gone")
		mustOK(t, s.CreateItem(ctx, it, nil))
		mustOK(t, s.DeleteItem(ctx, it.ID))
		_, err := s.GetItem(ctx, it.ID)
		mustKind(t, err, domain.KindNotFound)
	})

	t.Run("list pages in ID order", func(t *testing.T) {
		all, err := s.ListItems(ctx, "", 1000)
		mustOK(t, err)
		for i := range 5 {
			mustOK(t, s.CreateItem(ctx, newItem(fmt.Sprintf("page-%d", i)), nil))
		}
		var seen []string
		after := ""
		if len(all) > 0 {
			after = all[len(all)-1].ID
		}
		for {
			page, err := s.ListItems(ctx, after, 2)
			mustOK(t, err)
			if len(page) == 0 {
				break
			}
			for _, it := range page {
				if it.ID <= after {
					t.Fatalf("out of order: %s after %s", it.ID, after)
				}
				seen = append(seen, it.Name)
				after = it.ID
			}
		}
		if len(seen) != 5 || seen[0] != "page-0" || seen[4] != "page-4" {
			t.Fatalf("paged through %v", seen)
		}
	})

	t.Run("a cancelled context is unavailable, not internal", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s.GetItem(cctx, uuid.Must(uuid.NewV7()).String())
		if err == nil || domain.KindOf(err) == domain.KindInternal {
			t.Fatalf("got %v (kind %s), want a kind other than internal", err, domain.KindOf(err))
		}
	})
}

// BenchmarkGet measures the store's get-by-id, the hot read path, on s (migrated). Run it
// per adapter and compare ns/op across adapters and engines.
func BenchmarkGet(b *testing.B, s service.ItemStore) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	it := domain.Item{ID: uuid.Must(uuid.NewV7()).String(), Name: "bench", Description: "an item to read", Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateItem(ctx, it, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetItem(ctx, it.ID); err != nil {
			b.Fatal(err)
		}
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustKind(t *testing.T, err error, kind domain.Kind) {
	t.Helper()
	if got := domain.KindOf(err); err == nil || got != kind {
		t.Fatalf("got error %v (kind %s), want kind %s", err, got, kind)
	}
}
