package store

import (
	"context"
	"time"

	"github.com/example/my-service/internal/domain"
)

// expiring gives an adapter's idempotency records a lifetime, ttl. The policy lives here,
// once, above every engine and data layer; the adapters only delete records by age.
type expiring struct {
	Adapter
	ttl time.Duration
}

func withIdempotencyTTL(a Adapter, ttl time.Duration) Store { return expiring{Adapter: a, ttl: ttl} }

// GetIdempotencyRecord returns the record of key; KindNotFound when there is none or it
// has expired. An expired record is deleted on sight, so the create that follows takes
// the key afresh; the delete spares a record a concurrent create has just written.
// Deleting here, not before every insert, keeps creates with fresh keys at one statement.
func (s expiring) GetIdempotencyRecord(ctx context.Context, key string) (domain.IdempotencyRecord, error) {
	rec, err := s.Adapter.GetIdempotencyRecord(ctx, key)
	if err != nil {
		return domain.IdempotencyRecord{}, err
	}
	before := s.expiredBefore()
	if !rec.CreatedAt.Before(before) {
		return rec, nil
	}
	if err := s.DeleteExpiredIdempotencyRecord(ctx, key, before); err != nil {
		return domain.IdempotencyRecord{}, err
	}
	return domain.IdempotencyRecord{}, domain.Errorf(domain.KindNotFound, "idempotency key not found")
}

// SweepIdempotencyRecords implements Store.
func (s expiring) SweepIdempotencyRecords(ctx context.Context, limit int) (int64, error) {
	return s.DeleteExpiredIdempotencyRecords(ctx, s.expiredBefore(), limit)
}

// expiredBefore is the creation time before which records have expired. It is UTC, as
// the records' times are: SQLite compares them as text.
func (s expiring) expiredBefore() time.Time { return time.Now().UTC().Add(-s.ttl) }
