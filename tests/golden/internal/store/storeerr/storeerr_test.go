package storeerr_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store/storeerr"
)

func TestMap(t *testing.T) {
	boom := errors.New("boom")
	for name, tc := range map[string]struct {
		err   error
		class storeerr.Class
		want  domain.Kind
	}{
		"no rows":   {boom, storeerr.NoRows, domain.KindNotFound},
		"duplicate": {boom, storeerr.Duplicate, domain.KindConflict},
		"busy":      {boom, storeerr.Busy, domain.KindUnavailable},
		"fault":     {boom, storeerr.Unavailable, domain.KindUnavailable},
		"rejected":  {boom, storeerr.Rejected, domain.KindInvalid},
		"deadline":  {fmt.Errorf("query: %w", context.DeadlineExceeded), storeerr.Other, domain.KindUnavailable},
		"cancelled": {context.Canceled, storeerr.Other, domain.KindUnavailable},
		"unknown":   {boom, storeerr.Other, domain.KindInternal},
	} {
		t.Run(name, func(t *testing.T) {
			got := storeerr.Map(tc.err, "thing", tc.class)
			if domain.KindOf(got) != tc.want {
				t.Fatalf("kind %s, want %s (%v)", domain.KindOf(got), tc.want, got)
			}
			if !errors.Is(got, tc.err) && tc.class != storeerr.NoRows {
				t.Fatalf("the cause was lost: %v", got)
			}
		})
	}
	if storeerr.Map(nil, "thing", storeerr.Other) != nil {
		t.Fatal("nil error mapped to an error")
	}
}

func TestAffected(t *testing.T) {
	if err := storeerr.Affected(1, "thing"); err != nil {
		t.Fatal(err)
	}
	if err := storeerr.Affected(0, "thing"); domain.KindOf(err) != domain.KindNotFound {
		t.Fatalf("got %v", err)
	}
}

func TestConnectionLost(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		lost bool
	}{
		"bad connection": {fmt.Errorf("exec: %w", driver.ErrBadConn), true},
		"cut off":        {fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		"closed":         {io.EOF, true},
		"refused":        {&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		"deadline":       {fmt.Errorf("query: %w", context.DeadlineExceeded), false},
		"cancelled":      {context.Canceled, false},
		"other":          {errors.New("syntax error"), false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := storeerr.ConnectionLost(tc.err); got != tc.lost {
				t.Fatalf("ConnectionLost(%v) = %v, want %v", tc.err, got, tc.lost)
			}
		})
	}
}

func TestCheckWrites(t *testing.T) {
	readOnly := errors.New("read-only")
	classify := func(err error) storeerr.Class {
		if errors.Is(err, readOnly) {
			return storeerr.Unavailable
		}
		return storeerr.Other
	}
	probe := func(err error) func(context.Context, string) error {
		return func(_ context.Context, query string) error {
			if query != storeerr.WriteProbe {
				t.Fatalf("ran %q, want the write probe", query)
			}
			return err
		}
	}
	ctx := t.Context()
	if err := storeerr.CheckWrites(ctx, probe(nil), classify); err != nil {
		t.Fatalf("a database that takes writes: %v", err)
	}
	err := storeerr.CheckWrites(ctx, probe(readOnly), classify)
	var de *domain.Error
	if !errors.As(err, &de) || de.Kind != domain.KindUnavailable || de.Message != "refuses writes" || !errors.Is(err, readOnly) {
		t.Fatalf("a read-only database: %v", err)
	}
	if err := storeerr.CheckWrites(ctx, probe(errors.New("no such table")), classify); err != nil {
		t.Fatalf("other failures are not this check's: %v", err)
	}
	if err := storeerr.CheckWrites(ctx, probe(context.DeadlineExceeded), classify); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a probe out of time: %v", err)
	}
}
