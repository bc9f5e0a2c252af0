// Package outbound calls other services over HTTP with the safeguards the platform asks of
// every dependency. Give each dependency one Client (its name labels the metrics):
//
//   - a deadline for the whole call and one for each attempt, shares of the request
//     deadline (config: OUTBOUND_TIMEOUT, OUTBOUND_ATTEMPT_TIMEOUT), so a slow dependency
//     cannot use up the caller's whole budget;
//   - retries only of idempotent requests (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or any
//     request carrying an Idempotency-Key) whose body can be sent again, after a timeout, a
//     connection error, 429, 500, 502, 503 or 504, with exponential backoff, full jitter and
//     a cap, waiting at least what a Retry-After asks (a longer one than OUTBOUND_RETRY_AFTER_CAP
//     ends the call), and never past the call's deadline;
//   - a circuit breaker (sony/gobreaker) that opens after consecutive failed attempts, so a
//     dead dependency costs no more requests and no waiting, and lets one probe through
//     after a pause (half-open);
//   - a bound on requests in flight: past it a call fails at once, instead of piling up
//     goroutines and connections behind a slow dependency;
//   - Prometheus metrics per dependency (outbound_*), and the caller's request ID passed on
//     in X-Request-ID; when tracing is on, every attempt is a client span (otelhttp) and
//     carries the trace context (W3C traceparent and baggage) to the dependency.
//
// Every failure is a domain error of KindUnavailable (a handler that returns it answers
// 503), wrapping ErrCircuitOpen, ErrTooManyInFlight, context.DeadlineExceeded,
// context.Canceled or the transport's error.
package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/telemetry"
)

// Options is one dependency's policy; config.Outbound converts to it.
type Options struct {
	Timeout         time.Duration // the whole call: every attempt and every wait between them
	AttemptTimeout  time.Duration // one attempt, reading the response body included
	RetryAttempts   int           // tries of a retryable request, the first included; 1 never retries
	RetryBase       time.Duration // backoff ceiling before the first retry, doubled for each next one ...
	RetryCap        time.Duration // ... up to this
	RetryAfterCap   time.Duration // a Retry-After longer than this ends the call instead of waiting
	BreakerFailures uint32        // consecutive failed attempts that open the breaker
	BreakerOpen     time.Duration // how long the breaker stays open before it lets one probe through
	MaxInFlight     int           // calls under way at once; one more fails with ErrTooManyInFlight
}

var (
	// ErrCircuitOpen is the cause when the breaker refused an attempt: nothing was sent.
	ErrCircuitOpen = errors.New("circuit breaker open")
	// ErrTooManyInFlight is the cause when MaxInFlight calls were already under way.
	ErrTooManyInFlight = errors.New("too many requests in flight")
)

// errFailedStatus marks an attempt answered with a status that counts against the breaker.
var errFailedStatus = errors.New("failed status")

// Client sends requests to one dependency. It is safe for concurrent use.
type Client struct {
	name    string
	opts    Options
	http    *http.Client
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
	slots   chan struct{}
	metrics clientMetrics
}

// New returns the client of the dependency name, its metrics registered on metrics'
// registry (clients share the metric families; name is their dependency label).
func New(name string, opts Options, metrics *telemetry.Metrics) (*Client, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("outbound %s: %w", name, err)
	}
	m, err := newMetrics(metrics.Registry, name)
	if err != nil {
		return nil, fmt.Errorf("outbound %s: metrics: %w", name, err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Keep as many idle connections as calls may be in flight, so a busy dependency reuses
	// connections instead of opening new ones (the default keeps 2).
	transport.MaxIdleConnsPerHost = opts.MaxInFlight
	c := &Client{
		name:    name,
		opts:    opts,
		http:    &http.Client{Transport: otelhttp.NewTransport(transport)},
		slots:   make(chan struct{}, opts.MaxInFlight),
		metrics: m,
	}
	c.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1, // one probe while half-open; its success closes the breaker
		Timeout:     opts.BreakerOpen,
		ReadyToTrip: func(counts gobreaker.Counts) bool {
			return counts.ConsecutiveFailures >= opts.BreakerFailures
		},
		OnStateChange: func(_ string, _, to gobreaker.State) {
			m.breaker.Set(float64(to))
		},
		// A caller that gave up says nothing about the dependency's health.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	})
	m.breaker.Set(float64(gobreaker.StateClosed))
	return c, nil
}

func (o Options) validate() error {
	var errs []error
	check := func(ok bool, msg string) {
		if !ok {
			errs = append(errs, errors.New(msg))
		}
	}
	check(o.Timeout > 0 && o.AttemptTimeout > 0 && o.AttemptTimeout <= o.Timeout, "timeouts must be positive, the attempt's at most the call's")
	check(o.RetryAttempts >= 1, "RetryAttempts must be at least 1")
	check(o.RetryBase >= 0 && o.RetryBase <= o.RetryCap, "RetryBase must be from 0 to RetryCap")
	check(o.RetryAfterCap >= 0, "RetryAfterCap must not be negative")
	check(o.BreakerFailures >= 1 && o.BreakerOpen > 0, "the breaker needs at least 1 failure and a positive open time")
	check(o.MaxInFlight >= 1, "MaxInFlight must be at least 1")
	return errors.Join(errs...)
}

// Do sends req under ctx (req's own context is not used) and returns the response. Statuses
// other than 429 and 5xx come back as they are, and the caller must close the body, which
// also ends the call's deadline and frees its slot. A 429 or 5xx left after the last
// attempt is an error, like every other failure (see the package comment).
func (c *Client) Do(ctx context.Context, req *http.Request) (*http.Response, error) {
	method := methodLabel(req.Method)
	select {
	case c.slots <- struct{}{}:
	default:
		c.metrics.calls.WithLabelValues(method, "too_many_in_flight").Inc()
		return nil, c.unavailable(ErrTooManyInFlight, "too many requests to a dependency are under way")
	}
	c.metrics.inFlight.Inc()
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	release := func() {
		cancel()
		c.metrics.inFlight.Dec()
		<-c.slots
	}
	resp, outcome, err := c.call(ctx, req)
	c.metrics.calls.WithLabelValues(method, outcome).Inc()
	if err != nil {
		release()
		return nil, err
	}
	resp.Body = &onClose{ReadCloser: resp.Body, fn: release}
	return resp, nil
}

// call makes the attempts of one call and returns the response or the call's error, with
// the outcome for the metrics.
func (c *Client) call(ctx context.Context, req *http.Request) (*http.Response, string, error) {
	tries := 1
	if retryable(req) {
		tries = c.opts.RetryAttempts
	}
	for n := 1; ; n++ {
		resp, err := c.attempt(ctx, req, n)
		if err == nil && !failed(resp.StatusCode) {
			return resp, "ok", nil
		}
		var status int
		var retryAfter time.Duration
		if resp != nil {
			status = resp.StatusCode
			retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			_ = resp.Body.Close()
		}
		wait := max(c.backoff(n), retryAfter)
		deadline, _ := ctx.Deadline() // Do always sets one
		// Give up when out of tries, when another try cannot help, when the dependency asks
		// for a longer pause than the cap, or when the wait would outlast the call.
		if n >= tries || !retryOn(ctx, status, err) || retryAfter > c.opts.RetryAfterCap || time.Until(deadline) <= wait {
			outcome, err := c.giveUp(status, err)
			return nil, outcome, err
		}
		if err := sleep(ctx, wait); err != nil {
			outcome, err := c.giveUp(0, err)
			return nil, outcome, err
		}
	}
}

// attempt sends one request through the breaker. Any HTTP response is returned with a nil
// error; its body ends the attempt's deadline when closed.
func (c *Client) attempt(ctx context.Context, req *http.Request, n int) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.AttemptTimeout)
	r := req.Clone(ctx)
	if n > 1 && req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			cancel()
			return nil, fmt.Errorf("rewind the request body: %w", err)
		}
		r.Body = body
	}
	if id := telemetry.RequestID(ctx); id != "" && r.Header.Get("X-Request-ID") == "" {
		r.Header.Set("X-Request-ID", id)
	}
	done, err := c.breaker.Allow()
	if err != nil { // open, or half-open with its probe under way
		cancel()
		return nil, fmt.Errorf("%w: %w", ErrCircuitOpen, err)
	}
	method := methodLabel(req.Method)
	start := time.Now()
	resp, err := c.http.Do(r) //nolint:gosec // G704: callers name their dependencies' URLs; sending there is this package's job
	c.metrics.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	c.metrics.attempts.WithLabelValues(method, attemptOutcome(resp, err)).Inc()
	if err != nil {
		cancel()
		done(err)
		return nil, err
	}
	if failed(resp.StatusCode) {
		done(errFailedStatus)
	} else {
		done(nil)
	}
	resp.Body = &onClose{ReadCloser: resp.Body, fn: cancel}
	return resp, nil
}

// giveUp turns the last attempt's failure (a status, or an error) into the call's error.
// Messages are safe to show to callers: they do not name the dependency; the cause does.
func (c *Client) giveUp(status int, err error) (string, error) {
	switch {
	case err == nil:
		return "failed_status", c.unavailable(fmt.Errorf("answered %d", status), "a dependency failed to answer")
	case errors.Is(err, ErrCircuitOpen):
		return "circuit_open", c.unavailable(err, "a dependency is unavailable")
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout", c.unavailable(err, "a dependency did not answer in time")
	case errors.Is(err, context.Canceled):
		return "canceled", c.unavailable(err, "the call to a dependency was canceled")
	default:
		return "error", c.unavailable(err, "a dependency could not be reached")
	}
}

func (c *Client) unavailable(err error, message string) error {
	return domain.Wrap(domain.KindUnavailable, fmt.Errorf("%s: %w", c.name, err), message)
}

// backoff is the full-jitter wait before retry n+1: uniform from 0 to RetryBase x 2^(n-1),
// capped at RetryCap. Jitter keeps many callers from retrying in step.
func (c *Client) backoff(n int) time.Duration {
	ceiling := c.opts.RetryBase
	for i := 1; i < n && ceiling < c.opts.RetryCap; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, c.opts.RetryCap)
	return rand.N(ceiling + 1) //nolint:gosec // jitter spreads retries out; it guards no secret
}

// retryable reports whether req may be sent more than once: its method is idempotent, or
// it carries an Idempotency-Key, and its body (if any) can be produced again.
func retryable(req *http.Request) bool {
	idempotent := req.Header.Get("Idempotency-Key") != ""
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		idempotent = true
	}
	return idempotent && (req.Body == nil || req.Body == http.NoBody || req.GetBody != nil)
}

// failed reports whether a status means the dependency could not serve the request: it
// counts against the breaker, and the call fails with it after the last attempt.
func failed(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// retryOn reports whether an attempt that failed with status or err is worth another try.
func retryOn(ctx context.Context, status int, err error) bool {
	switch {
	case err == nil:
		switch status {
		case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	case errors.Is(err, ErrCircuitOpen), ctx.Err() != nil:
		return false // the breaker refuses, or the call is over
	default:
		return true // the attempt timed out or the connection failed
	}
}

// parseRetryAfter reads a Retry-After header, in seconds or as an HTTP date; 0 when it is
// absent, malformed or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		const most = math.MaxInt64 / int64(time.Second) // no overflow into a negative wait
		return time.Duration(min(max(s, 0), most)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// onClose runs fn once, after the body is closed.
type onClose struct {
	io.ReadCloser
	once sync.Once
	fn   func()
}

func (b *onClose) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.fn)
	return err
}

// methodLabel keeps the method label's values to a known set.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut,
		http.MethodDelete, http.MethodPost, http.MethodPatch:
		return method
	}
	return "other"
}

// attemptOutcome is an attempt's metric outcome: the status class, or what went wrong.
func attemptOutcome(resp *http.Response, err error) string {
	switch {
	case err == nil:
		return strconv.Itoa(resp.StatusCode/100) + "xx"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "error"
	}
}

// clientMetrics are one dependency's series of the outbound_* metric families.
type clientMetrics struct {
	attempts *prometheus.CounterVec // method, outcome
	calls    *prometheus.CounterVec // method, outcome
	duration prometheus.ObserverVec // method
	inFlight prometheus.Gauge
	breaker  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, name string) (clientMetrics, error) {
	var errs []error
	attempts := register(reg, &errs, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outbound_attempts_total",
		Help: "Requests sent to other services, by dependency, method and outcome (status class, timeout, canceled, error).",
	}, []string{"dependency", "method", "outcome"}))
	calls := register(reg, &errs, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outbound_calls_total",
		Help: "Calls to other services, retries included, by dependency, method and outcome (ok, failed_status, timeout, canceled, error, circuit_open, too_many_in_flight).",
	}, []string{"dependency", "method", "outcome"}))
	duration := register(reg, &errs, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "outbound_attempt_duration_seconds",
		Help:    "Time from sending a request to another service to its response headers, by dependency and method.",
		Buckets: prometheus.DefBuckets,
	}, []string{"dependency", "method"}))
	inFlight := register(reg, &errs, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "outbound_in_flight",
		Help: "Calls to another service under way, by dependency.",
	}, []string{"dependency"}))
	breaker := register(reg, &errs, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "outbound_breaker_state",
		Help: "Circuit breaker state by dependency: 0 closed, 1 half-open, 2 open.",
	}, []string{"dependency"}))
	if err := errors.Join(errs...); err != nil {
		return clientMetrics{}, err
	}
	dep := prometheus.Labels{"dependency": name}
	return clientMetrics{
		attempts: attempts.MustCurryWith(dep),
		calls:    calls.MustCurryWith(dep),
		duration: duration.MustCurryWith(dep),
		inFlight: inFlight.With(dep),
		breaker:  breaker.With(dep),
	}, nil
}

// register registers c, or returns the collector another Client registered before it.
func register[C prometheus.Collector](reg prometheus.Registerer, errs *[]error, c C) C {
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing
		}
	}
	if err != nil {
		*errs = append(*errs, err)
	}
	return c
}
