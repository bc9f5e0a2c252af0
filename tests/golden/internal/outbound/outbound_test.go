package outbound_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/outbound"
	"github.com/example/my-service/internal/telemetry"
)

// options are fast test settings: short backoffs and breaker pause, generous deadlines.
func options() outbound.Options {
	return outbound.Options{
		Timeout: 5 * time.Second, AttemptTimeout: 2 * time.Second, RetryAttempts: 3,
		RetryBase: time.Millisecond, RetryCap: 4 * time.Millisecond, RetryAfterCap: 2 * time.Second,
		BreakerFailures: 5, BreakerOpen: 200 * time.Millisecond, MaxInFlight: 4,
	}
}

func newClient(t *testing.T, name string, opts outbound.Options) (*outbound.Client, *telemetry.Metrics) {
	t.Helper()
	metrics := telemetry.NewMetrics()
	c, err := outbound.New(name, opts, metrics)
	if err != nil {
		t.Fatal(err)
	}
	return c, metrics
}

// serve starts a stand-in dependency, closed when the test ends.
func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// send makes one call and reads the whole body, as a caller would.
func send(ctx context.Context, t *testing.T, c *outbound.Client, method, url string, body io.Reader, header http.Header) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Error(err)
		return 0, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Errorf("reading the body: %v", err)
	}
	return resp.StatusCode, nil
}

func get(ctx context.Context, t *testing.T, c *outbound.Client, url string) (int, error) {
	t.Helper()
	return send(ctx, t, c, http.MethodGet, url, nil, nil)
}

// metric adds up the samples of a metric family whose labels include want (a histogram
// counts its observations).
func metric(t *testing.T, m *telemetry.Metrics, name string, want map[string]string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	samples:
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue samples
				}
			}
			total += s.GetCounter().GetValue() + s.GetGauge().GetValue() + float64(s.GetHistogram().GetSampleCount())
		}
	}
	return total
}

func wantUnavailable(t *testing.T, err error, cause error) {
	t.Helper()
	if !domain.IsKind(err, domain.KindUnavailable) || (cause != nil && !errors.Is(err, cause)) {
		t.Fatalf("got %v, want an unavailable error caused by %v", err, cause)
	}
}

const (
	closed   = 0
	halfOpen = 1
	open     = 2
)

func TestBreakerOpensHalfOpensAndCloses(t *testing.T) {
	var (
		hits    atomic.Int64
		healthy atomic.Bool
		hold    atomic.Bool
		arrived = make(chan struct{}, 1)
		release = make(chan struct{})
	)
	releaseAll := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseAll) // runs before the server closes, so no handler is left waiting
	srv := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		if hold.Load() {
			arrived <- struct{}{}
			<-release
		}
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	opts := options()
	c, m := newClient(t, "flaky", opts)
	ctx := t.Context()
	state := func() float64 {
		return metric(t, m, "outbound_breaker_state", map[string]string{"dependency": "flaky"})
	}

	// Closed, failing: every attempt counts until BreakerFailures in a row open the breaker;
	// from then on calls fail at once and send nothing. Ten calls, no retry storm.
	const calls = 10
	for range calls {
		_, err := get(ctx, t, c, srv.URL)
		wantUnavailable(t, err, nil)
	}
	if got := hits.Load(); got != int64(opts.BreakerFailures) {
		t.Fatalf("%d requests reached the dependency in %d calls, want %d (the failures that open the breaker)", got, calls, opts.BreakerFailures)
	}
	if got := metric(t, m, "outbound_attempts_total", nil); got != float64(opts.BreakerFailures) {
		t.Fatalf("attempts metric %v, want %d", got, opts.BreakerFailures)
	}
	if got := metric(t, m, "outbound_calls_total", map[string]string{"outcome": "circuit_open"}); got != calls-1 {
		t.Fatalf("circuit_open calls %v, want %d", got, calls-1)
	}
	if state() != open {
		t.Fatalf("breaker state %v, want open", state())
	}

	// Open: the dependency is back, but nothing goes through before the pause ends.
	healthy.Store(true)
	_, err := get(ctx, t, c, srv.URL)
	wantUnavailable(t, err, outbound.ErrCircuitOpen)
	if hits.Load() != int64(opts.BreakerFailures) {
		t.Fatal("an open breaker let a request through")
	}

	// Half-open: after the pause one probe goes through, and only one.
	time.Sleep(opts.BreakerOpen)
	hold.Store(true)
	probe := make(chan error, 1)
	go func() {
		status, err := get(ctx, t, c, srv.URL)
		if err == nil && status != http.StatusOK {
			err = errors.New(http.StatusText(status))
		}
		probe <- err
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the probe never reached the dependency")
	}
	if state() != halfOpen {
		t.Fatalf("breaker state %v during the probe, want half-open", state())
	}
	_, err = get(ctx, t, c, srv.URL)
	wantUnavailable(t, err, outbound.ErrCircuitOpen)
	hold.Store(false)
	releaseAll()
	if err := <-probe; err != nil {
		t.Fatalf("probe: %v", err)
	}

	// Closed again: the probe's success closed the breaker.
	if state() != closed {
		t.Fatalf("breaker state %v after the probe, want closed", state())
	}
	for range 3 {
		if status, err := get(ctx, t, c, srv.URL); err != nil || status != http.StatusOK {
			t.Fatalf("after recovery: %d %v", status, err)
		}
	}
	if got, want := hits.Load(), int64(opts.BreakerFailures)+4; got != want {
		t.Fatalf("%d requests in all, want %d", got, want)
	}
}

func TestFailedProbeReopens(t *testing.T) {
	var hits atomic.Int64
	srv := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	})
	opts := options()
	opts.BreakerFailures = 1
	c, m := newClient(t, "probe", opts)
	_, err := get(t.Context(), t, c, srv.URL) // fails, opens; the retry is refused
	wantUnavailable(t, err, outbound.ErrCircuitOpen)
	time.Sleep(opts.BreakerOpen)
	_, err = get(t.Context(), t, c, srv.URL) // the probe fails: open again
	wantUnavailable(t, err, outbound.ErrCircuitOpen)
	if hits.Load() != 2 {
		t.Fatalf("%d requests, want 2 (one per call)", hits.Load())
	}
	if got := metric(t, m, "outbound_breaker_state", nil); got != open {
		t.Fatalf("breaker state %v, want open", got)
	}
}

func TestDeadDependencyCostsNoMoreThanTheBreakerAllows(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // connections are refused from now on
	opts := options()
	c, m := newClient(t, "dead", opts)
	const calls = 10
	for range calls {
		_, err := get(t.Context(), t, c, url)
		wantUnavailable(t, err, nil)
	}
	// At most the failures that open the breaker plus one try per call; in fact exactly
	// the failures, as the calls run one after another.
	if got := metric(t, m, "outbound_attempts_total", map[string]string{"outcome": "error"}); got != float64(opts.BreakerFailures) {
		t.Fatalf("%v attempts in %d calls, want %d", got, calls, opts.BreakerFailures)
	}
}

func TestRetriesHonourRetryAfter(t *testing.T) {
	var (
		mu    sync.Mutex
		times []time.Time
	)
	srv := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		n := len(times)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	c, _ := newClient(t, "polite", options())
	status, err := get(t.Context(), t, c, srv.URL)
	if err != nil || status != http.StatusOK {
		t.Fatalf("got %d %v, want 200 after one retry", status, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 2 {
		t.Fatalf("%d requests, want 2", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Fatalf("retried after %v, before the Retry-After of 1s", gap)
	}
}

func TestRetryAfterBeyondTheCapOrTheDeadlineEndsTheCall(t *testing.T) {
	for name, tc := range map[string]struct {
		retryAfter string
		timeout    time.Duration
	}{
		"seconds over the cap":  {"120", 5 * time.Second},
		"a date over the cap":   {time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), 5 * time.Second},
		"longer than the call":  {"1", 500 * time.Millisecond},
		"malformed, then fails": {"soon", 5 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			var hits atomic.Int64
			srv := serve(t, func(w http.ResponseWriter, _ *http.Request) {
				hits.Add(1)
				w.Header().Set("Retry-After", tc.retryAfter)
				w.WriteHeader(http.StatusServiceUnavailable)
			})
			opts := options()
			opts.Timeout, opts.AttemptTimeout = tc.timeout, tc.timeout
			c, _ := newClient(t, "busy", opts)
			start := time.Now()
			_, err := get(t.Context(), t, c, srv.URL)
			wantUnavailable(t, err, nil)
			want := int64(1)
			if tc.retryAfter == "soon" { // ignored: plain backoff, every try
				want = int64(opts.RetryAttempts)
			}
			if hits.Load() != want {
				t.Fatalf("%d requests, want %d", hits.Load(), want)
			}
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Fatalf("gave up after %v: it waited instead", elapsed)
			}
		})
	}
}

func TestOnlyIdempotentRequestsAreRetried(t *testing.T) {
	var (
		mu     sync.Mutex
		bodies []string
	)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	opts := options()
	opts.BreakerFailures = 100 // this test counts retries, not the breaker
	c, _ := newClient(t, "writes", opts)
	key := http.Header{"Idempotency-Key": {"k-1"}}
	for name, tc := range map[string]struct {
		method string
		body   io.Reader
		header http.Header
		want   int
	}{
		"POST":                         {http.MethodPost, strings.NewReader("p"), nil, 1},
		"PATCH":                        {http.MethodPatch, strings.NewReader("p"), nil, 1},
		"POST with an Idempotency-Key": {http.MethodPost, strings.NewReader("payload"), key, opts.RetryAttempts},
		"a body that cannot be resent": {http.MethodPost, io.NopCloser(strings.NewReader("once")), key, 1},
		"PUT":                          {http.MethodPut, strings.NewReader("put"), nil, opts.RetryAttempts},
		"DELETE":                       {http.MethodDelete, nil, nil, opts.RetryAttempts},
	} {
		t.Run(name, func(t *testing.T) {
			mu.Lock()
			bodies = nil
			mu.Unlock()
			_, err := send(t.Context(), t, c, tc.method, srv.URL, tc.body, tc.header)
			wantUnavailable(t, err, nil)
			mu.Lock()
			defer mu.Unlock()
			if len(bodies) != tc.want {
				t.Fatalf("%d requests, want %d", len(bodies), tc.want)
			}
			for _, b := range bodies {
				if b != bodies[0] {
					t.Fatalf("a retry sent %q, the first try %q", b, bodies[0])
				}
			}
		})
	}
}

func TestStatusesBelow500AreTheCallersAndOnlyTransientOnesAreRetried(t *testing.T) {
	for _, tc := range []struct {
		status int
		fails  bool
		hits   int64
	}{
		{http.StatusOK, false, 1},
		{http.StatusNotFound, false, 1},
		{http.StatusConflict, false, 1},
		{http.StatusNotImplemented, true, 1},
		{http.StatusInternalServerError, true, 3},
		{http.StatusGatewayTimeout, true, 3},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			var hits atomic.Int64
			srv := serve(t, func(w http.ResponseWriter, _ *http.Request) {
				hits.Add(1)
				w.WriteHeader(tc.status)
			})
			c, _ := newClient(t, "statuses", options())
			status, err := get(t.Context(), t, c, srv.URL)
			if tc.fails {
				wantUnavailable(t, err, nil)
			} else if err != nil || status != tc.status {
				t.Fatalf("got %d %v, want %d", status, err, tc.status)
			}
			if hits.Load() != tc.hits {
				t.Fatalf("%d requests, want %d", hits.Load(), tc.hits)
			}
		})
	}
}

func TestAttemptTimeoutRetriesAndCallTimeoutEnds(t *testing.T) {
	var hits atomic.Int64
	var slow atomic.Int64 // requests up to this number hang
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= slow.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	opts := options()
	opts.Timeout, opts.AttemptTimeout = 250*time.Millisecond, 100*time.Millisecond
	opts.BreakerFailures = 100
	c, m := newClient(t, "slow", opts)

	// One attempt hangs past its deadline; the retry answers.

	slow.Store(1)
	if status, err := get(t.Context(), t, c, srv.URL); err != nil || status != http.StatusOK {
		t.Fatalf("got %d %v, want 200 from the second try", status, err)
	}
	if got := metric(t, m, "outbound_attempts_total", map[string]string{"outcome": "timeout"}); got != 1 {
		t.Fatalf("%v timed-out attempts, want 1", got)
	}

	// Every attempt hangs: the call ends at its own deadline, whatever tries are left.
	hits.Store(0)
	slow.Store(1 << 30)
	start := time.Now()
	_, err := get(t.Context(), t, c, srv.URL)
	wantUnavailable(t, err, context.DeadlineExceeded)
	if elapsed := time.Since(start); elapsed > opts.Timeout+time.Second {
		t.Fatalf("the call took %v, past its deadline of %v", elapsed, opts.Timeout)
	}
	if n := hits.Load(); n < 2 || n > int64(opts.RetryAttempts) {
		t.Fatalf("%d requests, want 2 to %d", n, opts.RetryAttempts)
	}
}

func TestCallerCancelEndsTheCallWithoutCountingAgainstTheDependency(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := serve(t, func(_ http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	})
	opts := options()
	opts.BreakerFailures = 1
	c, m := newClient(t, "cancel", opts)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-arrived
		cancel()
	}()
	_, err := get(ctx, t, c, srv.URL)
	wantUnavailable(t, err, context.Canceled)
	if got := metric(t, m, "outbound_breaker_state", nil); got != closed {
		t.Fatalf("breaker state %v after a canceled call, want closed", got)
	}
}

func TestConcurrencyBound(t *testing.T) {
	var (
		mu            sync.Mutex
		current, peak int
		arrived       = make(chan struct{}, 2)
		release       = make(chan struct{})
	)
	releaseAll := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseAll)
	srv := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		current++
		peak = max(peak, current)
		mu.Unlock()
		arrived <- struct{}{}
		<-release
		mu.Lock()
		current--
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})
	opts := options()
	opts.MaxInFlight = 2
	c, m := newClient(t, "bounded", opts)

	var wg sync.WaitGroup
	errs := make(chan error, opts.MaxInFlight)
	for range opts.MaxInFlight {
		wg.Go(func() {
			_, err := get(t.Context(), t, c, srv.URL)
			errs <- err
		})
	}
	for range opts.MaxInFlight {
		<-arrived
	}
	start := time.Now()
	_, err := get(t.Context(), t, c, srv.URL)
	wantUnavailable(t, err, outbound.ErrTooManyInFlight)
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("the call over the bound waited %v instead of failing at once", waited)
	}
	if got := metric(t, m, "outbound_in_flight", nil); got != float64(opts.MaxInFlight) {
		t.Fatalf("in flight %v, want %d", got, opts.MaxInFlight)
	}
	releaseAll()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	most := peak
	mu.Unlock()
	if most != opts.MaxInFlight {
		t.Fatalf("%d requests at once, want %d", most, opts.MaxInFlight)
	}
	if status, err := get(t.Context(), t, c, srv.URL); err != nil || status != http.StatusOK {
		t.Fatalf("after the others finished: %d %v", status, err)
	}
	if got := metric(t, m, "outbound_in_flight", nil); got != 0 {
		t.Fatalf("in flight %v after every body was closed, want 0", got)
	}
}

func TestRequestIDReachesTheDependencyOnEveryAttempt(t *testing.T) {
	var (
		mu  sync.Mutex
		ids []string
	)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ids = append(ids, r.Header.Get("X-Request-ID"))
		n := len(ids)
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	c, m := newClient(t, "traced", options())
	ctx := telemetry.WithRequestID(t.Context(), "req-42")
	if status, err := get(ctx, t, c, srv.URL); err != nil || status != http.StatusOK {
		t.Fatalf("got %d %v", status, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(ids, ",") != "req-42,req-42" {
		t.Fatalf("the dependency saw request IDs %q, want req-42 on both tries", ids)
	}
	if got := metric(t, m, "outbound_attempt_duration_seconds", map[string]string{"dependency": "traced", "method": "GET"}); got != 2 {
		t.Fatalf("%v attempt durations observed, want 2", got)
	}
}

func TestNew(t *testing.T) {
	cfg, err := config.Load(func(k string) string {
		if k == "DATABASE_URL" {
			return "file:unused.db"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	metrics := telemetry.NewMetrics()
	// The configured defaults make a client, and clients share the metric families.
	for _, name := range []string{"a", "b"} {
		if _, err := outbound.New(name, outbound.Options(cfg.Outbound), metrics); err != nil {
			t.Fatal(err)
		}
	}
	bad := outbound.Options(cfg.Outbound)
	bad.MaxInFlight, bad.RetryAttempts = 0, 0
	if _, err := outbound.New("bad", bad, metrics); err == nil || !strings.Contains(err.Error(), "MaxInFlight") {
		t.Fatalf("bad options: got %v", err)
	}
	clash := telemetry.NewMetrics()
	clash.Registry.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "outbound_attempts_total", Help: "another"}))
	if _, err := outbound.New("clash", options(), clash); err == nil {
		t.Fatal("a clashing metric was accepted")
	}
}
