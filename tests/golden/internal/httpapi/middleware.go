package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/google/uuid"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/ratelimit"
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

// observe logs every request once, records the RED metrics by route pattern, and names the
// request's span (when traced) by its route pattern.
func observe(logger *slog.Logger, m *telemetry.Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			m.InFlight.Inc()
			defer m.InFlight.Dec()
			ww := &statusWriter{ResponseWriter: w}
			holder := &routeHolder{pattern: unmatched}
			next.ServeHTTP(ww, r.WithContext(context.WithValue(r.Context(), routeKey{}, holder)))
			status := ww.status
			if status == 0 {
				status = http.StatusOK
			}
			route := holder.pattern
			if span := trace.SpanFromContext(r.Context()); span.IsRecording() && route != unmatched {
				span.SetName(r.Method + " " + route)
				span.SetAttributes(semconv.HTTPRoute(route))
			}
			elapsed := time.Since(start)
			if holder.rateLimited {
				m.RateLimited.WithLabelValues("http").Inc()
			}
			m.Requests.WithLabelValues(r.Method, route, strconv.Itoa(status)).Inc()
			m.Duration.WithLabelValues(r.Method, route).Observe(elapsed.Seconds())
			logger.InfoContext(r.Context(), "request",
				"method", r.Method, "route", route, "path", r.URL.Path, "status", status,
				"bytes", ww.bytes, "duration_ms", float64(elapsed.Microseconds())/1000)
		})
	}
}

type routeKey struct{}

// unmatched is the route label of requests no endpoint matched.
const unmatched = "unmatched"

// routeHolder carries the matched route pattern out of the router, for metrics and logs,
// and whether the rate limit refused the request (counted in rate_limited_requests_total).
type routeHolder struct {
	pattern     string
	rateLimited bool
}

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

// Unwrap lets http.ResponseController reach the connection (read deadlines, flushing).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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

// securityHeaders sets the hardening headers on every response: an API answers JSON
// that no browser should sniff, frame, cache or treat as a page. HSTS goes out only over
// TLS (RFC 6797 forbids it on plain HTTP).
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}

type clientIPKey struct{}

// withClientIP puts the caller's address on the context, for rate limits and audit
// records: the TCP peer, or what a trusted proxy forwarded (see ratelimit.Proxies).
func withClientIP(proxies ratelimit.Proxies) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ip := proxies.ClientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientIPKey{}, ip)))
		})
	}
}

// clientIP is the address withClientIP found.
func clientIP(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey{}).(string)
	return ip
}

// readBody reads the whole request body before the request deadline starts, within its
// own time limit, so the deadline covers the service's work and a 503 never blames the
// database for a slow client: a body over limit is 413 (at once when Content-Length says
// so), one that does not arrive within timeout is 408. Handlers decode from memory.
func readBody(logger *slog.Logger, limit int64, timeout time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > limit {
				writeError(w, r, logger, domain.Errorf(domain.KindTooLarge, "the body is larger than %d bytes", limit))
				return
			}
			if r.Body == nil || r.Body == http.NoBody {
				next.ServeHTTP(w, r)
				return
			}
			rc := http.NewResponseController(w)
			// Unsupported only by test recorders; the server's HTTP_READ_TIMEOUT still holds.
			_ = rc.SetReadDeadline(time.Now().Add(timeout))
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
			// Clear it: a deadline passing while the handler runs would cancel the request.
			_ = rc.SetReadDeadline(time.Time{})
			var (
				tooBig *http.MaxBytesError
				netErr net.Error
			)
			switch {
			case errors.As(err, &tooBig):
				writeError(w, r, logger, domain.Errorf(domain.KindTooLarge, "the body is larger than %d bytes", limit))
				return
			case errors.As(err, &netErr) && netErr.Timeout():
				w.Header().Set("Connection", "close")
				writeStatusError(w, r, logger, http.StatusRequestTimeout, "request_timeout",
					fmt.Sprintf("the request body did not arrive within %s", timeout))
				return
			case err != nil:
				writeError(w, r, logger, domain.Wrap(domain.KindInvalid, err, "the request body could not be read"))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
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

// rateLimit answers 429 with Retry-After when a client is over its rate. It runs after
// authenticate: a client is its subject when authenticated, else its address.
func rateLimit(logger *slog.Logger, l *ratelimit.Limiter) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key := ratelimit.Key(domain.PrincipalFromContext(r.Context()), clientIP(r.Context()))
			if ok, wait := l.Reserve(key, time.Now()); !ok {
				if holder, ok := r.Context().Value(routeKey{}).(*routeHolder); ok {
					holder.rateLimited = true // observe counts it
				}
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				writeError(w, r, logger, domain.Errorf(domain.KindRateLimited, "too many requests: slow down"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
