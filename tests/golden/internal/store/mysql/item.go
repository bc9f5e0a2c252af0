package mysql

import (
	"context"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store/mysql/gen"
	"github.com/example/my-service/internal/store/storeerr"
)

// The item queries. This file belongs to the service's team: the template does
// not update it (see the README, "Keeping the service current").

// CreateItem implements service.ItemStore.
func (s *Store) CreateItem(ctx context.Context, it domain.Item, rec *domain.IdempotencyRecord) error {
	err := s.inTx(ctx, func(q *gen.Queries) error {
		if err := q.CreateItem(ctx, gen.CreateItemParams{
			ID: it.ID, Name: it.Name, Description: it.Description,
			Version: it.Version, CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt,
		}); err != nil {
			return err
		}
		if rec == nil {
			return nil
		}
		return q.CreateIdempotencyRecord(ctx, gen.CreateIdempotencyRecordParams(*rec))
	})
	return mapErr(err, "item")
}

// GetItem implements service.ItemStore. It reads through the causal pool:
// on Galera it sees every write acknowledged before it.
func (s *Store) GetItem(ctx context.Context, id string) (domain.Item, error) {
	row, err := s.qc.GetItem(ctx, id)
	if err != nil {
		return domain.Item{}, mapErr(err, "item "+id)
	}
	return fromItem(row), nil
}

// ListItems implements service.ItemStore.
func (s *Store) ListItems(ctx context.Context, after string, limit int) ([]domain.Item, error) {
	rows, err := s.q.ListItems(ctx, gen.ListItemsParams{After: after, Limit: int32(min(limit, 1<<20))}) //nolint:gosec // bounded above
	if err != nil {
		return nil, mapErr(err, "items")
	}
	out := make([]domain.Item, len(rows))
	for i, row := range rows {
		out[i] = fromItem(row)
	}
	return out, nil
}

// UpdateItem implements service.ItemStore: MySQL has no RETURNING, so the
// row is read back in the same transaction.
func (s *Store) UpdateItem(ctx context.Context, it domain.Item, expectedVersion int64) (domain.Item, error) {
	var out domain.Item
	err := s.inTx(ctx, func(q *gen.Queries) error {
		n, err := q.UpdateItem(ctx, gen.UpdateItemParams{
			Name: it.Name, Description: it.Description, UpdatedAt: it.UpdatedAt,
			ID: it.ID, ExpectedVersion: expectedVersion,
		})
		if err != nil {
			return err
		}
		if err := storeerr.Affected(n, "item "+it.ID); err != nil {
			return err
		}
		row, err := q.GetItem(ctx, it.ID)
		out = fromItem(row)
		return err
	})
	if err != nil {
		return domain.Item{}, mapErr(err, "item "+it.ID)
	}
	return out, nil
}

// DeleteItem implements service.ItemStore.
func (s *Store) DeleteItem(ctx context.Context, id string) error {
	var n int64
	err := s.inTx(ctx, func(q *gen.Queries) error {
		var err error
		n, err = q.DeleteItem(ctx, id)
		return err
	})
	if err != nil {
		return mapErr(err, "item "+id)
	}
	return storeerr.Affected(n, "item "+id)
}

// GetIdempotencyRecord implements service.ItemStore (causal read: a retry must see
// the first request's record).
func (s *Store) GetIdempotencyRecord(ctx context.Context, key string) (domain.IdempotencyRecord, error) {
	row, err := s.qc.GetIdempotencyRecord(ctx, key)
	if err != nil {
		return domain.IdempotencyRecord{}, mapErr(err, "idempotency key")
	}
	return domain.IdempotencyRecord{Key: key, RequestHash: row.RequestHash, ResourceID: row.ResourceID, CreatedAt: row.CreatedAt}, nil
}

func fromItem(row gen.Item) domain.Item {
	return domain.Item{
		ID: row.ID, Name: row.Name, Description: row.Description, Version: row.Version,
		CreatedAt: row.CreatedAt.UTC(), UpdatedAt: row.UpdatedAt.UTC(),
	}
}
