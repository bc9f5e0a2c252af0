package sqlite

import (
	"context"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store/sqlite/gen"
	"github.com/example/my-service/internal/store/storeerr"
)

// The item queries. This file belongs to the service's team: the template does
// not update it (see the README, "Keeping the service current").

// CreateItem implements service.ItemStore.
func (s *Store) CreateItem(ctx context.Context, it domain.Item, rec *domain.IdempotencyRecord) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(err, "item")
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	q := s.q.WithTx(tx)
	if err := q.CreateItem(ctx, gen.CreateItemParams{
		ID: it.ID, Name: it.Name, Description: it.Description,
		Version: it.Version, CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt,
	}); err != nil {
		return mapErr(err, "item")
	}
	if rec != nil {
		if err := q.CreateIdempotencyRecord(ctx, gen.CreateIdempotencyRecordParams(*rec)); err != nil {
			return mapErr(err, "idempotency key")
		}
	}
	return mapErr(tx.Commit(), "item")
}

// GetItem implements service.ItemStore.
func (s *Store) GetItem(ctx context.Context, id string) (domain.Item, error) {
	row, err := s.q.GetItem(ctx, id)
	if err != nil {
		return domain.Item{}, mapErr(err, "item "+id)
	}
	return domain.Item(row), nil
}

// ListItems implements service.ItemStore.
func (s *Store) ListItems(ctx context.Context, after string, limit int) ([]domain.Item, error) {
	rows, err := s.q.ListItems(ctx, gen.ListItemsParams{After: after, RowLimit: int64(limit)})
	if err != nil {
		return nil, mapErr(err, "items")
	}
	out := make([]domain.Item, len(rows))
	for i, row := range rows {
		out[i] = domain.Item(row)
	}
	return out, nil
}

// UpdateItem implements service.ItemStore.
func (s *Store) UpdateItem(ctx context.Context, it domain.Item, expectedVersion int64) (domain.Item, error) {
	row, err := s.q.UpdateItem(ctx, gen.UpdateItemParams{
		Name: it.Name, Description: it.Description, UpdatedAt: it.UpdatedAt,
		ID: it.ID, ExpectedVersion: expectedVersion,
	})
	if err != nil {
		return domain.Item{}, mapErr(err, "item "+it.ID)
	}
	return domain.Item(row), nil
}

// DeleteItem implements service.ItemStore.
func (s *Store) DeleteItem(ctx context.Context, id string) error {
	n, err := s.q.DeleteItem(ctx, id)
	if err != nil {
		return mapErr(err, "item "+id)
	}
	return storeerr.Affected(n, "item "+id)
}

// GetIdempotencyRecord implements service.ItemStore.
func (s *Store) GetIdempotencyRecord(ctx context.Context, key string) (domain.IdempotencyRecord, error) {
	row, err := s.q.GetIdempotencyRecord(ctx, key)
	if err != nil {
		return domain.IdempotencyRecord{}, mapErr(err, "idempotency key")
	}
	return domain.IdempotencyRecord{Key: key, RequestHash: row.RequestHash, ResourceID: row.ResourceID, CreatedAt: row.CreatedAt}, nil
}
