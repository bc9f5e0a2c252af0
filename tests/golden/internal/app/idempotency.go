package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/example/my-service/internal/store"
)

// sweepBatch is how many expired idempotency records one statement deletes: short
// transactions, which Galera wants too.
const sweepBatch = 1000

// sweepIdempotencyRecords deletes expired idempotency records every interval until ctx
// ends. Lookups already treat an expired record as absent (and delete it), so the sweep
// only keeps the table from growing with keys nobody reuses. Every replica sweeps: two
// deleting the same rows is harmless. A failed sweep is logged and tried again at the
// next tick; each batch gets the statement timeout.
func sweepIdempotencyRecords(ctx context.Context, logger *slog.Logger, db store.Store, every, timeout time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		deleted, err := sweepOnce(ctx, db, timeout)
		if err != nil && ctx.Err() == nil {
			logger.WarnContext(ctx, "deleting expired idempotency records", "deleted", deleted, "err", err.Error())
		} else if deleted > 0 {
			logger.InfoContext(ctx, "expired idempotency records deleted", "deleted", deleted)
		}
	}
}

// sweepOnce deletes expired records batch by batch until a batch comes back short.
func sweepOnce(ctx context.Context, db store.Store, timeout time.Duration) (int64, error) {
	var deleted int64
	for {
		bctx, cancel := context.WithTimeout(ctx, timeout)
		n, err := db.SweepIdempotencyRecords(bctx, sweepBatch)
		cancel()
		deleted += n
		if err != nil || n < sweepBatch {
			return deleted, err
		}
	}
}
