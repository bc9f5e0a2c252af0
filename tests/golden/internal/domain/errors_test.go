package domain

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestKindOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Kind
	}{
		{"a domain error", Errorf(KindNotFound, "no such thing"), KindNotFound},
		{"a wrapped domain error", fmt.Errorf("lookup: %w", Invalid("bad", nil)), KindInvalid},
		{"any other error", errors.New("boom"), KindInternal},
		{"a deadline", context.DeadlineExceeded, KindUnavailable},
		{"a wrapped deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), KindUnavailable},
		{"a deadline inside an internal error", Wrap(KindInternal, context.DeadlineExceeded, "store"), KindUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := KindOf(tt.err); got != tt.want {
				t.Fatalf("KindOf(%v) = %s, want %s", tt.err, got, tt.want)
			}
		})
	}
	if IsKind(nil, KindInternal) {
		t.Fatal("IsKind(nil) = true, want false")
	}
}
