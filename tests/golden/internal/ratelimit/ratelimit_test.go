package ratelimit

import (
	"testing"
	"time"

	"github.com/example/my-service/internal/domain"
)

func TestLimiterForgetsIdleClients(t *testing.T) {
	l := New(1, 1)
	now := time.Now()
	if ok, _ := l.Reserve("a", now); !ok {
		t.Fatal("first request refused")
	}
	if ok, wait := l.Reserve("a", now); ok || wait <= 0 {
		t.Fatalf("second request at once: ok=%v wait=%v", ok, wait)
	}
	later := now.Add(clientIdleAfter + time.Second)
	if ok, _ := l.Reserve("b", later); !ok {
		t.Fatal("other client refused")
	}
	if l.Len() != 1 {
		t.Fatalf("%d clients remembered, want 1: the idle one stays", l.Len())
	}
}

func TestKeyPrefersTheSubject(t *testing.T) {
	if k := Key(domain.Principal{Subject: "alice"}, "10.0.0.1"); k != "sub:alice" {
		t.Fatal(k)
	}
	if k := Key(domain.Principal{Subject: domain.Anonymous}, "10.0.0.1"); k != "ip:10.0.0.1" {
		t.Fatal(k)
	}
}

func TestClientIPBelievesOnlyTrustedProxies(t *testing.T) {
	p, err := NewProxies([]string{"10.0.0.0/8", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"direct client", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"untrusted peer cannot forge", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"trusted proxy forwards", "10.1.2.3:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", "10.1.2.3:80", []string{"198.51.100.1, 192.0.2.7"}, "198.51.100.1"},
		{"client-written entries are ignored", "10.1.2.3:80", []string{"1.1.1.1, 198.51.100.1"}, "198.51.100.1"},
		{"several headers", "10.1.2.3:80", []string{"1.1.1.1", "198.51.100.1"}, "198.51.100.1"},
		{"garbage stops the walk", "10.1.2.3:80", []string{"nonsense"}, "10.1.2.3"},
		{"all trusted", "10.1.2.3:80", []string{"10.9.9.9"}, "10.9.9.9"},
		{"ipv6 peer", "[2001:db8::1]:443", nil, "2001:db8::1"},
		{"bare address", "203.0.113.9", nil, "203.0.113.9"},
		{"ipv4-mapped trusted proxy", "[::ffff:10.1.2.3]:80", []string{"198.51.100.1"}, "198.51.100.1"},
	} {
		if got := p.ClientIP(c.peer, c.xff); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if _, err := NewProxies([]string{"not-an-ip"}); err == nil {
		t.Fatal("a bad entry was accepted")
	}
}
