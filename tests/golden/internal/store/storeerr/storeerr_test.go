package storeerr_test

import (
	"context"
	"errors"
	"fmt"
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
