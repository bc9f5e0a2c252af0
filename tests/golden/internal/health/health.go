// Package health tracks whether the service is ready for traffic, as /readyz reports it. A failing check never stops the process.
package health

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/example/my-service/internal/domain"
)

// Pinger is a dependency whose reachability gates readiness. The store's Ping also checks
// that the database takes writes (a statement that changes nothing, or on SQLite a new
// connection that must open the file for writing), every time readiness is asked. So a
// database that turns read-only, full or unreachable fails readiness at the next check, and
// the first check after it recovers passes: there is no remembered failure that would need
// its own rule for when it is over. An unavailable *domain.Error names the reason.
type Pinger interface {
	Ping(ctx context.Context) error
}

// State is the readiness of the service.
type State struct {
	db       Pinger
	timeout  time.Duration
	migrated atomic.Bool
	draining atomic.Bool
}

// New returns a state that is not ready until MarkMigrated is called.
func New(db Pinger, timeout time.Duration) *State {
	return &State{db: db, timeout: timeout}
}

// MarkMigrated records that the schema is in place.
func (s *State) MarkMigrated() {
	s.migrated.Store(true)
}

// StartDraining makes the service report not-ready from now on, so load balancers stop
// sending traffic before the server shuts down.
func (s *State) StartDraining() {
	s.draining.Store(true)
}

// Draining reports whether shutdown has begun.
func (s *State) Draining() bool { return s.draining.Load() }

// Check names the checks and their results; Ready is true when all passed.
type Check struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

// Ready runs the readiness checks.
func (s *State) Ready(ctx context.Context) Check {
	c := Check{Ready: true, Checks: map[string]string{"draining": "ok", "migrations": "ok", "database": "ok"}}
	fail := func(name, why string) {
		c.Ready = false
		c.Checks[name] = why
	}
	if s.draining.Load() {
		fail("draining", "shutting down")
	}
	if !s.migrated.Load() {
		fail("migrations", "not applied yet")
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		var de *domain.Error
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			fail("database", "no answer within "+s.timeout.String())
		case errors.As(err, &de) && de.Kind == domain.KindUnavailable:
			fail("database", de.Message)
		default:
			fail("database", "unreachable")
		}
	}
	return c
}
