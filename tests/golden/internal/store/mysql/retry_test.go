package mysql

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store/storeerr"
)

var quick = RetryPolicy{Attempts: 5, Base: time.Millisecond, Cap: 5 * time.Millisecond}

func TestRetriesDeadlocksAndGaleraConflicts(t *testing.T) {
	for _, number := range []uint16{1213, 1205, 1047, 1180} {
		calls := 0
		var retried atomic.Uint64
		err := withRetry(t.Context(), quick, &retried, func(context.Context) error {
			calls++
			if calls < 3 {
				return &driver.MySQLError{Number: number, Message: "try again"}
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("error %d: err=%v after %d calls, want success on the third", number, err, calls)
		}
		if got := retried.Load(); got != 2 {
			t.Fatalf("error %d: %d retries counted, want 2", number, got)
		}
	}
}

func TestDoesNotRetryOtherErrors(t *testing.T) {
	for _, err := range []error{&driver.MySQLError{Number: 1062, Message: "duplicate"}, errors.New("boom")} {
		calls := 0
		var retried atomic.Uint64
		got := withRetry(t.Context(), quick, &retried, func(context.Context) error {
			calls++
			return err
		})
		if calls != 1 || !errors.Is(got, err) || retried.Load() != 0 {
			t.Fatalf("%v: %d calls (%d retries), err %v; want one call and the error", err, calls, retried.Load(), got)
		}
	}
}

func TestRetriesAreBounded(t *testing.T) {
	calls := 0
	var retried atomic.Uint64
	err := withRetry(t.Context(), quick, &retried, func(context.Context) error {
		calls++
		return &driver.MySQLError{Number: 1213, Message: "deadlock"}
	})
	var me *driver.MySQLError
	if uint64(calls) != quick.Attempts || !errors.As(err, &me) || me.Number != 1213 || retried.Load() != quick.Attempts-1 {
		t.Fatalf("%d calls (%d retries), err %v; want %d calls and the last error", calls, retried.Load(), err, quick.Attempts)
	}
}

// TestClassify: what the server's errors mean to callers; a statement cut by the statement
// timeout, or a commit that failed (a Galera node out of the primary component), is the
// database being unavailable (503), never a server bug (500).
func TestClassify(t *testing.T) {
	for number, want := range map[uint16]storeerr.Class{
		1062: storeerr.Duplicate, 1213: storeerr.Busy, 1205: storeerr.Busy, 1047: storeerr.Busy,
		1180: storeerr.Unavailable, 1969: storeerr.Unavailable, 3024: storeerr.Unavailable, 1290: storeerr.Unavailable,
	} {
		if got := classify(&driver.MySQLError{Number: number, Message: "x"}); got != want {
			t.Errorf("error %d: class %v, want %v", number, got, want)
		}
	}
}

// TestWholeTransactionIsRetried: a transaction that fails with 1213 at its end is rolled
// back and run again from the start, against a real server.
func TestWholeTransactionIsRetried(t *testing.T) {
	if os.Getenv("TEST_MARIADB_DSN") == "" {
		t.Skip("TEST_MARIADB_DSN is not set")
	}
	s := openForRetry(t)
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now().UTC().Truncate(time.Microsecond)
	attempts := 0
	insert := func(ctx context.Context, name string) error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(ctx, "INSERT INTO items (id, name, description, version, created_at, updated_at) VALUES (?, ?, '', 1, ?, ?)", id, name, now, now); err != nil {
			return err
		}
		if name == "retried" && attempts == 1 {
			return &driver.MySQLError{Number: 1213, Message: "Deadlock found when trying to get lock"}
		}
		return tx.Commit()
	}
	err := withRetry(t.Context(), s.retry, &s.retries, func(ctx context.Context) error {
		attempts++
		return insert(ctx, "retried")
	})
	if err != nil || attempts != 2 || s.Retries() != 1 {
		t.Fatalf("err %v after %d attempts, %d retries counted", err, attempts, s.Retries())
	}
	// The first attempt's insert was rolled back, so the second could insert the same ID.
	var n int
	if err := s.db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM items WHERE id = ?", id).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows with the ID (%v), want 1", n, err)
	}
	// A duplicate is not retried.
	attempts = 0
	err = withRetry(t.Context(), s.retry, &s.retries, func(ctx context.Context) error {
		attempts++
		return insert(ctx, "dup")
	})
	if attempts != 1 || classify(err) != storeerr.Duplicate {
		t.Fatalf("duplicate: %d attempts, %v", attempts, err)
	}
}

// TestGaleraReadiness: only a synced member of the primary component is ready; readiness
// shows the other states as the server reports them.
func TestGaleraReadiness(t *testing.T) {
	if err := galeraReady("ON", "Synced"); err != nil {
		t.Fatalf("a synced node: %v", err)
	}
	notReady := [][2]string{
		{"OFF", "Joining"},
		{"ON", "Donor/Desynced"},
		{"ON", "Joined"},
		{"OFF", "Initialized"},
	}
	for _, c := range notReady {
		err := galeraReady(c[0], c[1])
		var de *domain.Error
		want := "galera node is not ready (wsrep_ready=" + c[0] + ", wsrep_local_state_comment=" + c[1] + ")"
		if !errors.As(err, &de) || de.Kind != domain.KindUnavailable || de.Message != want {
			t.Fatalf("%v: %v, want an unavailable error %q", c, err, want)
		}
	}
}

func openForRetry(t *testing.T) *Store {
	t.Helper()
	cfg, err := driver.ParseDSN(os.Getenv("TEST_MARIADB_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	name := "retry_" + uuid.NewString()[:8]
	admin, err := Open(cfg.FormatDSN(), Options{Flavor: MariaDB, MaxConns: 2, ConnMaxLifetime: time.Minute, Retry: quick})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	if _, err := admin.db.ExecContext(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if a, err := Open(cfg.FormatDSN(), Options{Flavor: MariaDB, MaxConns: 1, ConnMaxLifetime: time.Minute}); err == nil {
			_, _ = a.db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name)
			_ = a.Close()
		}
	})
	cfg.DBName = name
	s, err := Open(cfg.FormatDSN(), Options{Flavor: MariaDB, MaxConns: 4, ConnMaxLifetime: time.Minute, Retry: quick})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}
