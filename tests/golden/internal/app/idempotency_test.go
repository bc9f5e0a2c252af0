package app

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/my-service/internal/store"
)

// sweepStore answers SweepIdempotencyRecords from a script; the rest of the
// store is not used.
type sweepStore struct {
	store.Store
	mu         sync.Mutex
	script     []int64 // rows each call deletes; -1 fails
	calls      int
	limits     []int
	noDeadline bool // a call came without a deadline
}

func (s *sweepStore) SweepIdempotencyRecords(ctx context.Context, limit int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		s.noDeadline = true
	}
	s.limits = append(s.limits, limit)
	n := int64(0)
	if s.calls < len(s.script) {
		n = s.script[s.calls]
	}
	s.calls++
	if n < 0 {
		return 0, errors.New("database down")
	}
	return n, nil
}

func TestSweepOnceDeletesBatchByBatch(t *testing.T) {
	db := &sweepStore{script: []int64{sweepBatch, sweepBatch, 7}}
	n, err := sweepOnce(t.Context(), db, time.Second)
	if err != nil || n != 2*sweepBatch+7 || db.calls != 3 || db.noDeadline {
		t.Fatalf("deleted %d, err %v, calls %d, a call without deadline %v", n, err, db.calls, db.noDeadline)
	}
	for _, limit := range db.limits {
		if limit != sweepBatch {
			t.Fatalf("batch sizes %v, want %d", db.limits, sweepBatch)
		}
	}

	db = &sweepStore{script: []int64{sweepBatch, -1}}
	n, err = sweepOnce(t.Context(), db, time.Second)
	if err == nil || n != sweepBatch || db.calls != 2 {
		t.Fatalf("deleted %d, err %v, calls %d: want the first batch and the error", n, err, db.calls)
	}
}

func TestSweepRunsEveryIntervalAndLogs(t *testing.T) {
	var logs syncBuffer
	db := &sweepStore{script: []int64{3, -1}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		sweepIdempotencyRecords(ctx, slog.New(slog.NewJSONHandler(&logs, nil)), db, 5*time.Millisecond, time.Second)
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"deleting expired idempotency records"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no sweep failure logged: %s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	out := logs.String()
	if !strings.Contains(out, `"msg":"expired idempotency records deleted","deleted":3`) || !strings.Contains(out, "database down") {
		t.Fatalf("logs: %s", out)
	}
}
