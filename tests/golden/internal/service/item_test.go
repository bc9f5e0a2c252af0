package service_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/service"
)

// fakeStore is an in-memory service.ItemStore; failNext makes the next call fail.
type fakeStore struct {
	mu       sync.Mutex
	rows     map[string]domain.Item
	keys     map[string]domain.IdempotencyRecord
	failNext error
	onCreate func() // runs inside Create, before the insert
}

var _ service.ItemStore = (*fakeStore)(nil)

func newFake() *fakeStore {
	return &fakeStore{rows: map[string]domain.Item{}, keys: map[string]domain.IdempotencyRecord{}}
}

func (f *fakeStore) fail() error {
	err := f.failNext
	f.failNext = nil
	return err
}

func (f *fakeStore) CreateItem(_ context.Context, it domain.Item, rec *domain.IdempotencyRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.onCreate != nil {
		f.onCreate()
	}
	if err := f.fail(); err != nil {
		return err
	}
	if rec != nil {
		if _, ok := f.keys[rec.Key]; ok {
			return domain.Errorf(domain.KindConflict, "key exists")
		}
		f.keys[rec.Key] = *rec
	}
	f.rows[it.ID] = it
	return nil
}

func (f *fakeStore) GetItem(_ context.Context, id string) (domain.Item, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail(); err != nil {
		return domain.Item{}, err
	}
	it, ok := f.rows[id]
	if !ok {
		return domain.Item{}, domain.Errorf(domain.KindNotFound, "not found")
	}
	return it, nil
}

func (f *fakeStore) ListItems(_ context.Context, after string, limit int) ([]domain.Item, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []domain.Item
	for _, it := range f.rows {
		if it.ID > after {
			out = append(out, it)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (f *fakeStore) UpdateItem(_ context.Context, it domain.Item, expected int64) (domain.Item, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.rows[it.ID]
	if !ok || cur.Version != expected {
		return domain.Item{}, domain.Errorf(domain.KindNotFound, "no match")
	}
	cur.Name, cur.Description, cur.UpdatedAt, cur.Version = it.Name, it.Description, it.UpdatedAt, cur.Version+1
	f.rows[it.ID] = cur
	return cur, nil
}

func (f *fakeStore) DeleteItem(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.rows[id]; !ok {
		return domain.Errorf(domain.KindNotFound, "not found")
	}
	delete(f.rows, id)
	return nil
}

func (f *fakeStore) GetIdempotencyRecord(_ context.Context, key string) (domain.IdempotencyRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.keys[key]
	if !ok {
		return domain.IdempotencyRecord{}, domain.Errorf(domain.KindNotFound, "not found")
	}
	return rec, nil
}

func newService(f *fakeStore) *service.Items {
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return service.NewItems(f, service.Limits{DefaultPageSize: 2, MaxPageSize: 3}, func() time.Time {
		clock = clock.Add(time.Second)
		return clock
	})
}

func wantKind(t *testing.T, err error, kind domain.Kind) {
	t.Helper()
	if got := domain.KindOf(err); err == nil || got != kind {
		t.Fatalf("got %v (kind %s), want kind %s", err, got, kind)
	}
}

func TestCreateValidates(t *testing.T) {
	svc := newService(newFake())
	_, _, err := svc.Create(t.Context(), domain.ItemInput{}, "")
	wantKind(t, err, domain.KindInvalid)
	var de *domain.Error
	if !errors.As(err, &de) || de.Fields["name"] != "is required" {
		t.Fatalf("fields: %+v", de)
	}
	long := make([]byte, 201)
	for i := range long {
		long[i] = 'a'
	}
	_, _, err = svc.Create(t.Context(), domain.ItemInput{Name: string(long)}, "")
	wantKind(t, err, domain.KindInvalid)
}

func TestCreateRefusesWhatIsNotText(t *testing.T) {
	svc := newService(newFake())
	for _, tc := range []struct {
		in          domain.ItemInput
		field, want string
	}{
		{domain.ItemInput{Name: " \t\n "}, "name", "must not be blank"},
		{domain.ItemInput{Name: "a\x00b"}, "name", "found U+0000 at character 2"},
		{domain.ItemInput{Name: "a", Description: "bell\a"}, "description", "found U+0007 at character 5"},
		{domain.ItemInput{Name: "a\u0085"}, "name", "found U+0085"},
		{domain.ItemInput{Name: "a\xffb"}, "name", "must be valid UTF-8"},
		{domain.ItemInput{Name: "a\uFFFDb"}, "name", "at character 2"},
	} {
		_, _, err := svc.Create(t.Context(), tc.in, "")
		var de *domain.Error
		if !errors.As(err, &de) || de.Kind != domain.KindInvalid || !strings.Contains(de.Fields[tc.field], tc.want) {
			t.Errorf("%q: got %v (fields %v), want %s %q", tc.in, err, de, tc.field, tc.want)
		}
	}
	_, _, err := svc.Create(t.Context(), domain.ItemInput{Name: "a"}, "key-\xff")
	var de *domain.Error
	if !errors.As(err, &de) || !strings.Contains(de.Fields["Idempotency-Key"], "valid UTF-8") {
		t.Errorf("a key with invalid UTF-8: got %v", err)
	}
	// Tabs and line breaks are text; so is every other script.
	if _, _, err := svc.Create(t.Context(), domain.ItemInput{Name: "Zoë 名前", Description: "two\r\nlines\tand a tab"}, ""); err != nil {
		t.Fatal(err)
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	f := newFake()
	svc := newService(f)
	in := domain.ItemInput{Name: "a"}
	first, replayed, err := svc.Create(t.Context(), in, "key-1")
	if err != nil || replayed {
		t.Fatalf("first create: %v replayed=%v", err, replayed)
	}
	again, replayed, err := svc.Create(t.Context(), in, "key-1")
	if err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("retry: %v replayed=%v id=%s want %s", err, replayed, again.ID, first.ID)
	}
	_, _, err = svc.Create(t.Context(), domain.ItemInput{Name: "b"}, "key-1")
	wantKind(t, err, domain.KindConflict)
	if len(f.rows) != 1 {
		t.Fatalf("stored %d rows, want 1", len(f.rows))
	}
}

func TestCreateRaceOnKeyReplays(t *testing.T) {
	f := newFake()
	svc := newService(f)
	in := domain.ItemInput{Name: "a"}
	winner, _, err := svc.Create(t.Context(), in, "k")
	if err != nil {
		t.Fatal(err)
	}
	// Hide the winner's key from the first lookup, as if its transaction had not committed
	// yet; it commits while the second request inserts, which then hits the duplicate key.
	if len(f.keys) != 1 {
		t.Fatalf("%d idempotency records, want 1", len(f.keys))
	}
	var rec domain.IdempotencyRecord
	for _, r := range f.keys {
		rec = r
	}
	delete(f.keys, rec.Key)
	f.onCreate = func() { f.keys[rec.Key] = rec; f.onCreate = nil }
	got, replayed, err := svc.Create(t.Context(), in, "k")
	if err != nil || !replayed || got.ID != winner.ID {
		t.Fatalf("got %+v replayed=%v err=%v, want the winner %s replayed", got, replayed, err, winner.ID)
	}
	if len(f.rows) != 1 {
		t.Fatalf("stored %d rows, want 1", len(f.rows))
	}
}

func TestUpdateChecksVersion(t *testing.T) {
	svc := newService(newFake())
	it, _, err := svc.Create(t.Context(), domain.ItemInput{Name: "a"}, "")
	if err != nil {
		t.Fatal(err)
	}
	upd, err := svc.Update(t.Context(), it.ID, domain.ItemInput{Name: "b"}, 1)
	if err != nil || upd.Version != 2 || upd.Name != "b" {
		t.Fatalf("update: %+v %v", upd, err)
	}
	_, err = svc.Update(t.Context(), it.ID, domain.ItemInput{Name: "c"}, 1)
	wantKind(t, err, domain.KindConflict)
	_, err = svc.Update(t.Context(), it.ID, domain.ItemInput{Name: "c"}, 0)
	wantKind(t, err, domain.KindInvalid)
	_, err = svc.Update(t.Context(), "0190b6a4-0000-7000-8000-000000000000", domain.ItemInput{Name: "c"}, 1)
	wantKind(t, err, domain.KindNotFound)
	_, err = svc.Get(t.Context(), "not-a-uuid")
	wantKind(t, err, domain.KindInvalid)
}

func TestListPages(t *testing.T) {
	svc := newService(newFake())
	for _, name := range []string{"a", "b", "c"} {
		if _, _, err := svc.Create(t.Context(), domain.ItemInput{Name: name}, ""); err != nil {
			t.Fatal(err)
		}
	}
	page, err := svc.List(t.Context(), "", 0)
	if err != nil || len(page.Items) != 2 || page.NextCursor == "" {
		t.Fatalf("first page: %+v %v", page, err)
	}
	page, err = svc.List(t.Context(), page.NextCursor, 0)
	if err != nil || len(page.Items) != 1 || page.NextCursor != "" {
		t.Fatalf("last page: %+v %v", page, err)
	}
	_, err = svc.List(t.Context(), "garbage!", 0)
	wantKind(t, err, domain.KindInvalid)
	_, err = svc.List(t.Context(), "", 4)
	wantKind(t, err, domain.KindInvalid)
}

func TestStoreErrorsPassThrough(t *testing.T) {
	f := newFake()
	svc := newService(f)
	f.failNext = domain.Errorf(domain.KindUnavailable, "db down")
	_, _, err := svc.Create(t.Context(), domain.ItemInput{Name: "a"}, "")
	wantKind(t, err, domain.KindUnavailable)
}
