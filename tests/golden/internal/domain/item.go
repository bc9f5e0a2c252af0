package domain

import "time"

// Item is the example resource. It shows the whole path from transport to
// database; rename it or delete it (see the README) when your own resources arrive.
type Item struct {
	ID          string
	Name        string
	Description string
	// Version increases by one on every update; writers send the version they read
	// (optimistic concurrency).
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ItemInput is what callers may set on an item. Every string a caller sends
// gets the text rule (no control characters, no invalid UTF-8); notblank and text are
// the service's own rules (internal/service/validate.go).
type ItemInput struct {
	Name        string `json:"name" validate:"required,notblank,max=200,text"`
	Description string `json:"description" validate:"max=2000,text"`
}

// IdempotencyRecord remembers which resource a create with an Idempotency-Key made, and
// a hash of the request, so a retry gets the same answer and a reuse with a different
// body is refused.
type IdempotencyRecord struct {
	Key         string
	RequestHash string
	ResourceID  string
	CreatedAt   time.Time
}

// Page is one page of a cursor-paginated list.
type Page[T any] struct {
	Items      []T
	NextCursor string // empty on the last page
}
