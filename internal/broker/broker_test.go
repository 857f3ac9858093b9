package broker

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCloseWhileClientsConnect closes the broker while connections keep
// arriving: Close must return (no client left for it to wait on) and, under
// -race, mochi's client WaitGroup must not race.
func TestCloseWhileClientsConnect(t *testing.T) {
	for round := 0; round < 20; round++ {
		b, err := Start("127.0.0.1:0", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
					if err != nil {
						continue
					}
					// Half a CONNECT: the broker holds the client, waiting.
					c.Write([]byte{0x10, 0x20, 0x00, 0x04})
					defer c.Close()
				}
			}()
		}
		time.Sleep(time.Duration(round) * time.Millisecond) // vary the moment of the Close
		done := make(chan struct{})
		go func() { b.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return")
		}
		close(stop)
		wg.Wait()
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Start(ln.Addr().String(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "embedded_broker.enabled: false") {
		t.Fatalf("err = %v", err)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		t.Fatalf("raw net error leaked: %v", err)
	}
}
