package service

import (
	"testing"

	"github.com/google/uuid"

	"github.com/example/my-service/internal/domain"
)

func FuzzCursor(f *testing.F) {
	for _, seed := range []string{"", encodeCursor(uuid.NewString()), "abc", "!!!", encodeCursor("not-a-uuid")} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, cursor string) {
		after, err := decodeCursor(cursor)
		if err != nil {
			if domain.KindOf(err) != domain.KindInvalid {
				t.Fatalf("kind %s: %v", domain.KindOf(err), err)
			}
			return
		}
		if cursor == "" {
			return
		}
		if _, err := uuid.Parse(after); err != nil {
			t.Fatalf("cursor %q decoded to %q, not an ID", cursor, after)
		}
		if again, err := decodeCursor(encodeCursor(after)); err != nil || again != after {
			t.Fatalf("round trip of %q: %q %v", after, again, err)
		}
	})
}
