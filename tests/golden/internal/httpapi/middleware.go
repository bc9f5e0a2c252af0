package httpapi

import (
	"context"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/telemetry"
)

const requestIDHeader = "X-Request-ID"

// requestID takes the caller's X-Request-ID when it is sane, or makes one, and puts it on
// the context (for logs) and on the response.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(requestIDHeader)
		if !validRequestID(id) {
			id = uuid.NewString()
		}
		w.Header().Set(requestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(telemetry.WithRequestID(r.Context(), id)))
	})
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// observe logs every request once and records the RED metrics by route pattern.
func observe(logger *slog.Logger, m *telemetry.Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			m.InFlight.Inc()
			defer m.InFlight.Dec()
			ww := &statusWriter{ResponseWriter: w}
			holder := &routeHolder{pattern: "unmatched"}
			next.ServeHTTP(ww, r.WithContext(context.WithValue(r.Context(), routeKey{}, holder)))
			status := ww.status
			if status == 0 {
				status = http.StatusOK
			}
			route := holder.pattern
			elapsed := time.Since(start)
			m.Requests.WithLabelValues(r.Method, route, strconv.Itoa(status)).Inc()
			m.Duration.WithLabelValues(r.Method, route).Observe(elapsed.Seconds())
			logger.InfoContext(r.Context(), "request",
				"method", r.Method, "route", route, "path", r.URL.Path, "status", status,
				"bytes", ww.bytes, "duration_ms", float64(elapsed.Microseconds())/1000)
		})
	}
}

type routeKey struct{}

// routeHolder carries the matched route pattern out of the router, for metrics and logs.
type routeHolder struct{ pattern string }

// routed records pattern as the request's route before calling h.
func routed(pattern string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if holder, ok := r.Context().Value(routeKey{}).(*routeHolder); ok {
			holder.pattern = pattern
		}
		h.ServeHTTP(w, r)
	})
}

// statusWriter remembers the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += n
	return n, err
}

// recoverer turns a panic into a logged, masked 500.
func recoverer(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				rec := recover()
				if rec == nil {
					return
				}
				if rec == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as panic value
					panic(rec)
				}
				logger.ErrorContext(r.Context(), "panic", "panic", rec, "stack", string(debug.Stack()))
				writeStatusError(w, r, logger, http.StatusInternalServerError, string(domain.KindInternal), "internal error")
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// limitBody refuses bodies over max: at once when Content-Length says so, else while
// reading (decode reports too_large).
func limitBody(logger *slog.Logger, limit int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > limit {
				writeError(w, r, logger, domain.Errorf(domain.KindTooLarge, "the body is larger than %d bytes", limit))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			next.ServeHTTP(w, r)
		})
	}
}

// deadline gives every request the computed deadline; stores return unavailable (503)
// when it passes.
func deadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// clientLimiter is a token bucket per client address, forgetting idle clients.
type clientLimiter struct {
	mu      sync.Mutex
	rps     rate.Limit
	burst   int
	clients map[string]*clientEntry
	swept   time.Time
}

type clientEntry struct {
	limiter  *rate.Limiter
	lastSeen time.Time
}

const clientIdleAfter = 3 * time.Minute

func newClientLimiter(rps float64, burst int) *clientLimiter {
	return &clientLimiter{rps: rate.Limit(rps), burst: burst, clients: map[string]*clientEntry{}, swept: time.Now()}
}

// reserve takes a token for client, or says how long until one is free.
func (l *clientLimiter) reserve(client string, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > clientIdleAfter {
		for k, e := range l.clients {
			if now.Sub(e.lastSeen) > clientIdleAfter {
				delete(l.clients, k)
			}
		}
		l.swept = now
	}
	e, found := l.clients[client]
	if !found {
		e = &clientEntry{limiter: rate.NewLimiter(l.rps, l.burst)}
		l.clients[client] = e
	}
	e.lastSeen = now
	res := e.limiter.ReserveN(now, 1)
	if delay := res.DelayFrom(now); delay > 0 {
		res.CancelAt(now)
		return false, delay
	}
	return true, 0
}

// rateLimit answers 429 with Retry-After when a client is over its rate.
func rateLimit(logger *slog.Logger, l *clientLimiter) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			client, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				client = r.RemoteAddr
			}
			if ok, wait := l.reserve(client, time.Now()); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				writeError(w, r, logger, domain.Errorf(domain.KindRateLimited, "too many requests: slow down"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
