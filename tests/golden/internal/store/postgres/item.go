package postgres

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store/postgres/gen"
	"github.com/example/my-service/internal/store/storeerr"
)

// The item queries. This file belongs to the service's team: the template does
// not update it (see the README, "Keeping the service current").

// CreateItem implements service.ItemStore.
func (s *Store) CreateItem(ctx context.Context, it domain.Item, rec *domain.IdempotencyRecord) error {
	id, err := parseID(it.ID)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		if err := q.CreateItem(ctx, gen.CreateItemParams{
			ID: id, Name: it.Name, Description: it.Description,
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

// GetItem implements service.ItemStore.
func (s *Store) GetItem(ctx context.Context, id string) (domain.Item, error) {
	uid, err := parseID(id)
	if err != nil {
		return domain.Item{}, err
	}
	row, err := s.q.GetItem(ctx, uid)
	if err != nil {
		return domain.Item{}, mapErr(err, "item "+id)
	}
	return fromItem(row), nil
}

// ListItems implements service.ItemStore.
func (s *Store) ListItems(ctx context.Context, after string, limit int) ([]domain.Item, error) {
	afterID := uuid.Nil
	if after != "" {
		var err error
		if afterID, err = parseID(after); err != nil {
			return nil, err
		}
	}
	rows, err := s.q.ListItems(ctx, gen.ListItemsParams{After: afterID, RowLimit: int32(min(limit, 1<<20))}) //nolint:gosec // bounded above
	if err != nil {
		return nil, mapErr(err, "items")
	}
	out := make([]domain.Item, len(rows))
	for i, row := range rows {
		out[i] = fromItem(row)
	}
	return out, nil
}

// UpdateItem implements service.ItemStore.
func (s *Store) UpdateItem(ctx context.Context, it domain.Item, expectedVersion int64) (domain.Item, error) {
	id, err := parseID(it.ID)
	if err != nil {
		return domain.Item{}, err
	}
	row, err := s.q.UpdateItem(ctx, gen.UpdateItemParams{
		Name: it.Name, Description: it.Description, UpdatedAt: it.UpdatedAt,
		ID: id, ExpectedVersion: expectedVersion,
	})
	if err != nil {
		return domain.Item{}, mapErr(err, "item "+it.ID)
	}
	return fromItem(row), nil
}

// DeleteItem implements service.ItemStore.
func (s *Store) DeleteItem(ctx context.Context, id string) error {
	uid, err := parseID(id)
	if err != nil {
		return err
	}
	n, err := s.q.DeleteItem(ctx, uid)
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

func fromItem(row gen.Item) domain.Item {
	return domain.Item{
		ID: row.ID.String(), Name: row.Name, Description: row.Description,
		Version: row.Version, CreatedAt: row.CreatedAt.UTC(), UpdatedAt: row.UpdatedAt.UTC(),
	}
}

func parseID(id string) (uuid.UUID, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil, domain.Invalid("the ID is not a UUID", map[string]string{"id": "must be a UUID"})
	}
	return uid, nil
}
