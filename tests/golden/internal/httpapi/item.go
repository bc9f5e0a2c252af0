package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/service"
)

// itemJSON is an item on the wire.
type itemJSON struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func toItemJSON(it domain.Item) itemJSON {
	return itemJSON(it)
}

// updateItemRequest is the body of PUT: the new fields and the version the
// caller read (or send it as If-Match).
type updateItemRequest struct {
	domain.ItemInput
	Version int64 `json:"version"`
}

type itemPage struct {
	Data       []itemJSON `json:"data"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

func etag(version int64) string { return fmt.Sprintf("%q", strconv.FormatInt(version, 10)) }

func handleItemCreate(logger *slog.Logger, svc *service.Items) http.Handler {
	return handler(logger, func(w http.ResponseWriter, r *http.Request) error {
		in, err := decode[domain.ItemInput](r)
		if err != nil {
			return err
		}
		it, replayed, err := svc.Create(r.Context(), in, r.Header.Get("Idempotency-Key"))
		if err != nil {
			return err
		}
		status := http.StatusCreated
		if replayed {
			status = http.StatusOK
			w.Header().Set("Idempotent-Replayed", "true")
		}
		w.Header().Set("Location", r.URL.Path+"/"+it.ID)
		w.Header().Set("ETag", etag(it.Version))
		writeJSON(w, r, logger, status, toItemJSON(it))
		return nil
	})
}

func handleItemGet(logger *slog.Logger, svc *service.Items) http.Handler {
	return handler(logger, func(w http.ResponseWriter, r *http.Request) error {
		it, err := svc.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		w.Header().Set("ETag", etag(it.Version))
		writeJSON(w, r, logger, http.StatusOK, toItemJSON(it))
		return nil
	})
}

func handleItemList(logger *slog.Logger, svc *service.Items) http.Handler {
	return handler(logger, func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		limit := 0
		if q.Has("limit") {
			n, err := strconv.Atoi(q.Get("limit"))
			if err != nil {
				return domain.Invalid("limit is not a number", map[string]string{"limit": "must be a whole number"})
			}
			limit = n
		}
		page, err := svc.List(r.Context(), q.Get("cursor"), limit)
		if err != nil {
			return err
		}
		out := itemPage{Data: make([]itemJSON, len(page.Items)), NextCursor: page.NextCursor}
		for i, it := range page.Items {
			out.Data[i] = toItemJSON(it)
		}
		writeJSON(w, r, logger, http.StatusOK, out)
		return nil
	})
}

func handleItemUpdate(logger *slog.Logger, svc *service.Items) http.Handler {
	return handler(logger, func(w http.ResponseWriter, r *http.Request) error {
		req, err := decode[updateItemRequest](r)
		if err != nil {
			return err
		}
		version, err := expectedVersion(r.Header.Get("If-Match"), req.Version)
		if err != nil {
			return err
		}
		it, err := svc.Update(r.Context(), r.PathValue("id"), req.ItemInput, version)
		if err != nil {
			return err
		}
		w.Header().Set("ETag", etag(it.Version))
		writeJSON(w, r, logger, http.StatusOK, toItemJSON(it))
		return nil
	})
}

func handleItemDelete(logger *slog.Logger, svc *service.Items) http.Handler {
	return handler(logger, func(w http.ResponseWriter, r *http.Request) error {
		if err := svc.Delete(r.Context(), r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// expectedVersion reads the version from If-Match ("3" or W/"3") or the body.
func expectedVersion(ifMatch string, bodyVersion int64) (int64, error) {
	if ifMatch == "" {
		return bodyVersion, nil
	}
	v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(ifMatch, "W/"), `"`), 10, 64)
	if err != nil || v < 1 {
		return 0, domain.Invalid("If-Match is not a version ETag", map[string]string{"If-Match": `must be an ETag from this API, like "3"`})
	}
	if bodyVersion != 0 && bodyVersion != v {
		return 0, domain.Invalid("If-Match and version disagree", map[string]string{"version": "must match If-Match"})
	}
	return v, nil
}
