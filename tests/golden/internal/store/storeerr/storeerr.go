// Package storeerr gives database errors their domain kinds, the same way for every
// engine. Each adapter only says what its driver's error means (a Class).
package storeerr

import (
	"context"
	"errors"
	"fmt"

	"github.com/example/my-service/internal/domain"
)

// Class is what an engine-specific error means to the service.
type Class int

// The classes an adapter can report.
const (
	Other     Class = iota // unknown: an internal error
	NoRows                 // nothing matched
	Duplicate              // a unique key is taken
	Busy                   // contention or overload: try again later
)

// Map returns err with its domain kind. what names the thing the query was about.
func Map(err error, what string, class Class) error {
	switch {
	case err == nil:
		return nil
	case class == NoRows:
		return domain.Errorf(domain.KindNotFound, "%s not found", what)
	case class == Duplicate:
		return domain.Wrap(domain.KindConflict, err, what+" already exists")
	case class == Busy:
		return domain.Wrap(domain.KindUnavailable, err, "the database is busy")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return domain.Wrap(domain.KindUnavailable, err, "the database did not answer in time")
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}

// Affected turns a statement that touched no rows into a not-found error.
func Affected(n int64, what string) error {
	if n == 0 {
		return domain.Errorf(domain.KindNotFound, "%s not found", what)
	}
	return nil
}
