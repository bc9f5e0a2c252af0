package mysql

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/sethvargo/go-retry"
)

// RetryPolicy bounds the retries of a whole transaction: exponential backoff from Base,
// with jitter, capped at Cap per wait, at most Attempts tries in all.
type RetryPolicy struct {
	Attempts uint64
	Base     time.Duration
	Cap      time.Duration
}

// retryable reports whether err says the whole transaction may succeed if run again:
// 1213 (deadlock, or a Galera certification failure), 1205 (lock wait timeout), 1047
// (Galera node not ready / WSREP has not yet prepared the node) and 1180 (error during
// commit: on Galera, the node was briefly out of the primary component while the cluster
// changed its membership; the transaction was rolled back).
func retryable(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1213, 1205, 1047, 1180:
			return true
		}
	}
	return false
}

// withRetry runs tx until it succeeds, fails with a non-retryable error, or the policy is
// spent (then the last error is returned). Each run after the first adds one to retried
// (the db_transaction_retries_total metric).
func withRetry(ctx context.Context, p RetryPolicy, retried *atomic.Uint64, tx func(context.Context) error) error {
	if p.Attempts < 1 {
		p.Attempts = 1
	}
	b := retry.NewExponential(p.Base)
	b = retry.WithJitterPercent(50, b)
	b = retry.WithCappedDuration(p.Cap, b)
	b = retry.WithMaxRetries(p.Attempts-1, b)
	first := true
	return retry.Do(ctx, b, func(ctx context.Context) error {
		if !first {
			retried.Add(1)
		}
		first = false
		err := tx(ctx)
		if retryable(err) {
			return retry.RetryableError(err)
		}
		return err
	})
}
