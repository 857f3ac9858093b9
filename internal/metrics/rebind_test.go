package metrics

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestRebindBeforeRun: a reload that comes before the server started
// serving (a SIGHUP right at start) moves it all the same: Run serves the
// new address, and the old one is closed.
func TestRebindBeforeRun(t *testing.T) {
	s := NewServer(New("v1"), NewLiveness(time.Minute), func() bool { return true }, "v1", slog.New(slog.DiscardHandler))
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	old := s.Addr()
	if err := s.Rebind("127.0.0.1:0"); err != nil {
		t.Fatalf("Rebind before Run: %v", err)
	}
	addr := s.Addr()
	if addr == old {
		t.Fatalf("still on %s", old)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("the new address: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz on the new address: %d", resp.StatusCode)
	}
	if c, err := net.DialTimeout("tcp", old, time.Second); err == nil {
		c.Close()
		t.Fatalf("the old address %s still accepts connections", old)
	}
}
