// Package service holds the domain rules. Transports call it; it calls the store through
// the small interface it defines here. Each operation is a span ("<Resource>.<Operation>")
// when tracing is on, between the transport's server span and the database's.
package service

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/google/uuid"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/telemetry"
)

// ItemStore is what the service needs from persistence. Every adapter under
// internal/store implements it; errors carry domain kinds (KindNotFound when nothing
// matched, KindConflict on a duplicate key).
type ItemStore interface {
	// CreateItem inserts it and, when rec is not nil, the idempotency record, atomically.
	CreateItem(ctx context.Context, it domain.Item, rec *domain.IdempotencyRecord) error
	GetItem(ctx context.Context, id string) (domain.Item, error)
	// ListItems returns up to limit items with IDs greater than after, by ID.
	ListItems(ctx context.Context, after string, limit int) ([]domain.Item, error)
	// UpdateItem writes name and description where the stored version equals
	// expectedVersion, bumping the version; KindNotFound when no row matched.
	UpdateItem(ctx context.Context, it domain.Item, expectedVersion int64) (domain.Item, error)
	DeleteItem(ctx context.Context, id string) error
	// GetIdempotencyRecord returns the record of key, KindNotFound when there is none.
	// The store the service runs on also counts a record older than IDEMPOTENCY_TTL as
	// none, and forgets it, so its key makes a new item (internal/store/idempotency.go).
	GetIdempotencyRecord(ctx context.Context, key string) (domain.IdempotencyRecord, error)
}

// Limits for list pages.
type Limits struct {
	DefaultPageSize int
	MaxPageSize     int
}

// Items is the item service.
type Items struct {
	store    ItemStore
	validate *validator.Validate
	limits   Limits
	now      func() time.Time
}

// NewItems returns the item service. now may be nil (time.Now).
func NewItems(store ItemStore, limits Limits, now func() time.Time) *Items {
	if now == nil {
		now = time.Now
	}
	return &Items{store: store, validate: newValidator(), limits: limits, now: now}
}

// timestamp is the current time as every store keeps it (UTC, microseconds).
func (s *Items) timestamp() time.Time {
	return s.now().UTC().Truncate(time.Microsecond)
}

// Create makes an item. With an idempotency key, a retry of the same request gets the
// item the first one made (replayed is true), and the same key with a different
// request is a conflict. Keys belong to the caller and last IDEMPOTENCY_TTL.
func (s *Items) Create(ctx context.Context, in domain.ItemInput, idempotencyKey string) (it domain.Item, replayed bool, err error) {
	ctx, span := telemetry.StartSpan(ctx, "Items.Create")
	defer func() { telemetry.EndSpan(span, err) }()
	if err := validate(s.validate, in); err != nil {
		return domain.Item{}, false, err
	}
	if len(idempotencyKey) > 200 {
		return domain.Item{}, false, domain.Invalid("the Idempotency-Key header is too long",
			map[string]string{"Idempotency-Key": "must be at most 200 bytes"})
	}
	// Keys that differ only in invalid bytes would decode alike (U+FFFD over gRPC).
	if problem := textProblem(idempotencyKey); problem != "" {
		return domain.Item{}, false, domain.Invalid("the Idempotency-Key is not text",
			map[string]string{"Idempotency-Key": problem})
	}
	hash := requestHash(in)
	key := ""
	if idempotencyKey != "" {
		key = scopedKey("items", domain.PrincipalFromContext(ctx).Subject, idempotencyKey)
		it, err := s.replay(ctx, key, hash)
		if err == nil {
			return it, true, nil
		}
		if !domain.IsKind(err, domain.KindNotFound) {
			return domain.Item{}, false, err
		}
	}

	id, err := uuid.NewV7()
	if err != nil {
		return domain.Item{}, false, domain.Wrap(domain.KindInternal, err, "generating an ID")
	}
	now := s.timestamp()
	it = domain.Item{
		ID: id.String(), Name: in.Name, Description: in.Description,
		Version: 1, CreatedAt: now, UpdatedAt: now,
	}
	var rec *domain.IdempotencyRecord
	if key != "" {
		rec = &domain.IdempotencyRecord{Key: key, RequestHash: hash, ResourceID: it.ID, CreatedAt: now}
	}
	err = s.store.CreateItem(ctx, it, rec)
	if key != "" && domain.IsKind(err, domain.KindConflict) {
		// A concurrent request with the same key won the race: answer as it did.
		it, err := s.replay(ctx, key, hash)
		return it, err == nil, err
	}
	if err != nil {
		return domain.Item{}, false, err
	}
	return it, false, nil
}

// scopedKey names an idempotency record by resource, caller and key, so one caller's key
// never replays another caller's resource. The hash keeps the stored key short whatever
// the subject's length.
func scopedKey(resource, subject, key string) string {
	sum := sha256.Sum256([]byte(subject + "\x00" + key))
	return resource + ":" + hex.EncodeToString(sum[:])
}

// replay returns the item an earlier create with this key made.
func (s *Items) replay(ctx context.Context, key, hash string) (domain.Item, error) {
	rec, err := s.store.GetIdempotencyRecord(ctx, key)
	if err != nil {
		return domain.Item{}, err
	}
	if rec.RequestHash != hash {
		return domain.Item{}, domain.Errorf(domain.KindConflict,
			"the Idempotency-Key was already used with a different request")
	}
	it, err := s.store.GetItem(ctx, rec.ResourceID)
	if domain.IsKind(err, domain.KindNotFound) {
		return domain.Item{}, domain.Errorf(domain.KindConflict,
			"the Idempotency-Key belongs to an item that was deleted since")
	}
	return it, err
}

// Get returns one item.
func (s *Items) Get(ctx context.Context, id string) (_ domain.Item, err error) {
	ctx, span := telemetry.StartSpan(ctx, "Items.Get")
	defer func() { telemetry.EndSpan(span, err) }()
	if err := checkID(id); err != nil {
		return domain.Item{}, err
	}
	return s.store.GetItem(ctx, id)
}

// List returns one page of items in creation order. cursor is empty for the first
// page, then the NextCursor of the page before; limit 0 means the default page size.
func (s *Items) List(ctx context.Context, cursor string, limit int) (_ domain.Page[domain.Item], err error) {
	ctx, span := telemetry.StartSpan(ctx, "Items.List")
	defer func() { telemetry.EndSpan(span, err) }()
	if limit == 0 {
		limit = s.limits.DefaultPageSize
	}
	if limit < 1 || limit > s.limits.MaxPageSize {
		return domain.Page[domain.Item]{}, domain.Invalid("limit is out of range",
			map[string]string{"limit": fmt.Sprintf("must be from 1 to %d", s.limits.MaxPageSize)})
	}
	after, err := decodeCursor(cursor)
	if err != nil {
		return domain.Page[domain.Item]{}, err
	}
	// Ask for one more than the page to learn whether another page follows.
	items, err := s.store.ListItems(ctx, after, limit+1)
	if err != nil {
		return domain.Page[domain.Item]{}, err
	}
	page := domain.Page[domain.Item]{Items: items}
	if len(items) > limit {
		page.Items = items[:limit]
		page.NextCursor = encodeCursor(items[limit-1].ID)
	}
	return page, nil
}

// Update replaces the caller-settable fields when expectedVersion is the current version.
func (s *Items) Update(ctx context.Context, id string, in domain.ItemInput, expectedVersion int64) (_ domain.Item, err error) {
	ctx, span := telemetry.StartSpan(ctx, "Items.Update")
	defer func() { telemetry.EndSpan(span, err) }()
	if err := checkID(id); err != nil {
		return domain.Item{}, err
	}
	if err := validate(s.validate, in); err != nil {
		return domain.Item{}, err
	}
	if expectedVersion < 1 {
		return domain.Item{}, domain.Invalid("the version to update is missing",
			map[string]string{"version": "is required: send the version you read (or an If-Match header)"})
	}
	it := domain.Item{ID: id, Name: in.Name, Description: in.Description, UpdatedAt: s.timestamp()}
	updated, err := s.store.UpdateItem(ctx, it, expectedVersion)
	if !domain.IsKind(err, domain.KindNotFound) {
		return updated, err
	}
	// Nothing matched: either the item is gone, or someone updated it first.
	current, getErr := s.store.GetItem(ctx, id)
	if getErr != nil {
		return domain.Item{}, getErr
	}
	return domain.Item{}, domain.Errorf(domain.KindConflict,
		"version %d is stale: the item is at version %d", expectedVersion, current.Version)
}

// Delete removes an item.
func (s *Items) Delete(ctx context.Context, id string) (err error) {
	ctx, span := telemetry.StartSpan(ctx, "Items.Delete")
	defer func() { telemetry.EndSpan(span, err) }()
	if err := checkID(id); err != nil {
		return err
	}
	return s.store.DeleteItem(ctx, id)
}

func checkID(id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return domain.Invalid("the ID is not a UUID", map[string]string{"id": "must be a UUID"})
	}
	return nil
}

func requestHash(in domain.ItemInput) string {
	h := sha256.New()
	for _, part := range []string{in.Name, in.Description} {
		_, _ = fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func encodeCursor(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastID))
}

func decodeCursor(cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err == nil {
		if _, perr := uuid.Parse(string(raw)); perr == nil {
			return string(raw), nil
		}
	}
	return "", domain.Invalid("the cursor is not valid",
		map[string]string{"cursor": "must be a next_cursor value from an earlier page"})
}
