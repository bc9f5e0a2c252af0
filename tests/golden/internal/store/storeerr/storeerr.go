// Package storeerr gives database errors their domain kinds, the same way for every
// engine. Each adapter only says what its driver's error means (a Class).
package storeerr

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/example/my-service/internal/domain"
)

// Class is what an engine-specific error means to the service.
type Class int

// The classes an adapter can report.
const (
	Other       Class = iota // unknown: an internal error
	NoRows                   // nothing matched
	Duplicate                // a unique key is taken
	Busy                     // contention or overload: try again later
	Unavailable              // the database cannot take the work: read-only, full, failing, unreachable, shutting down
	Rejected                 // the database refuses a value (bad encoding, too long, out of range): the caller's input
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
	case class == Unavailable:
		return domain.Wrap(domain.KindUnavailable, err, "the database is unavailable")
	case class == Rejected:
		// Validation should have caught it (the text rules); this keeps a field it does not
		// cover from becoming a 500.
		return domain.Wrap(domain.KindInvalid, err, "the database refused a value of the "+what)
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

// ConnectionLost reports whether err says the connection to the database failed or broke,
// whatever the engine: database/sql's bad-connection signal, a network error, or an answer
// cut off. Engines classify it as Unavailable. A context that ended is not a lost
// connection (context.DeadlineExceeded is a net.Error too): Map reports it by itself.
func ConnectionLost(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne)
}

// WriteProbe is the statement readiness runs to learn whether a database server takes
// writes: an UPDATE that matches no row. A read-only server, session or standby refuses it
// as it refuses real writes, yet it changes nothing, locks no row and costs next to nothing.
// It names the idempotency table, which every service has and the template owns.
const WriteProbe = "UPDATE idempotency_keys SET resource_id = resource_id WHERE 1 = 0"

// CheckWrites runs the write probe with exec. It returns RefusesWrites when the engine's
// classify says the database cannot take writes, and the error itself when the probe ran
// out of time; other failures (the tables not migrated yet, say) are not this check's
// concern and pass.
func CheckWrites(ctx context.Context, exec func(ctx context.Context, query string) error, classify func(error) Class) error {
	err := exec(ctx, WriteProbe)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return err
	case classify(err) == Unavailable:
		return RefusesWrites(err)
	default:
		return nil
	}
}

// RefusesWrites wraps err, which says the database cannot take writes now, as the
// unavailable error readiness reports (its message is what /readyz shows).
func RefusesWrites(err error) error {
	return domain.Wrap(domain.KindUnavailable, err, "refuses writes")
}
