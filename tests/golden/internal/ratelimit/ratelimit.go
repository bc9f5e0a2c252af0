// Package ratelimit keeps a token bucket per client, for both transports. A client is the
// authenticated subject when there is one, else its IP address (see ClientIP).
package ratelimit

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/domain"
)

// Limiter is a token bucket per client, forgetting clients idle for a while.
type Limiter struct {
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

// New returns a limiter giving every client rps requests per second, with bursts; rps 0
// means no limit (config.Validate requires a positive rate of the service itself).
func New(rps float64, burst int) *Limiter {
	limit := rate.Limit(rps)
	if rps <= 0 {
		limit = rate.Inf
	}
	return &Limiter{rps: limit, burst: burst, clients: map[string]*clientEntry{}, swept: time.Now()}
}

// Reserve takes a token for client, or says how long until one is free.
func (l *Limiter) Reserve(client string, now time.Time) (ok bool, retryAfter time.Duration) {
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

// Len is the number of clients remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// Key is the bucket of a caller: its subject when authenticated, else its address.
func Key(p domain.Principal, clientIP string) string {
	if p.Subject != "" && p.Subject != domain.Anonymous {
		return "sub:" + p.Subject
	}
	return "ip:" + clientIP
}

// Proxies are the trusted proxies (TRUSTED_PROXIES): only they may say, in
// X-Forwarded-For, which address a request came from.
type Proxies struct{ trusted []netip.Prefix }

// NewProxies parses the TRUSTED_PROXIES entries (config.Validate has checked them).
func NewProxies(entries []string) (Proxies, error) {
	var p Proxies
	for _, e := range entries {
		prefix, err := config.ParsePrefix(e)
		if err != nil {
			return Proxies{}, err
		}
		p.trusted = append(p.trusted, prefix.Masked())
	}
	return p, nil
}

func (p Proxies) trusts(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, prefix := range p.trusted {
		if prefix.Contains(addr) {
			return true
		}
	}
	return false
}

// ClientIP is the address a request came from. peer is the TCP peer ("host:port" or a
// bare address); forwardedFor are the X-Forwarded-For values in order. When the peer is
// a trusted proxy, the list is read from the right, skipping trusted proxies: the first
// address left is the client (entries further left were written by the client itself
// and prove nothing). Otherwise the peer is the client, whatever the header says.
func (p Proxies) ClientIP(peer string, forwardedFor []string) string {
	peerAddr, err := netip.ParseAddrPort(peer)
	var addr netip.Addr
	if err == nil {
		addr = peerAddr.Addr()
	} else if addr, err = netip.ParseAddr(peer); err != nil {
		return peer
	}
	addr = addr.Unmap()
	if !p.trusts(addr) {
		return addr.String()
	}
	var hops []string
	for _, v := range forwardedFor {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a malformed entry ends what can be believed
		}
		addr = hop.Unmap()
		if !p.trusts(addr) {
			return addr.String()
		}
	}
	return addr.String()
}
