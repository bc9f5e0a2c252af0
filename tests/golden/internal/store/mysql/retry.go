package mysql

import (
	"context"
	"errors"
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
// 1213 (deadlock, or a Galera certification failure), 1205 (lock wait timeout) and 1047
// (Galera node not ready / WSREP has not yet prepared the node).
func retryable(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1213, 1205, 1047:
			return true
		}
	}
	return false
}

// withRetry runs tx until it succeeds, fails with a non-retryable error, or the policy is
// spent (then the last error is returned).
func withRetry(ctx context.Context, p RetryPolicy, tx func(context.Context) error) error {
	if p.Attempts < 1 {
		p.Attempts = 1
	}
	b := retry.NewExponential(p.Base)
	b = retry.WithJitterPercent(50, b)
	b = retry.WithCappedDuration(p.Cap, b)
	b = retry.WithMaxRetries(p.Attempts-1, b)
	return retry.Do(ctx, b, func(ctx context.Context) error {
		err := tx(ctx)
		if retryable(err) {
			return retry.RetryableError(err)
		}
		return err
	})
}
