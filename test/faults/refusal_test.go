//go:build faults

package faults

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
)

// aclBroker is a mosquitto whose ACL denies publishing under denied/.
func aclBroker(t *testing.T) *broker {
	t.Helper()
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte("topic readwrite #\ntopic deny denied/#\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return newBroker(t, autosaveDefault, "acl_file "+acl)
}

// TestMosquittoRefusal: what mosquitto answers a publish its ACL denies,
// through the session: on MQTT 5 a refusal (PUBACK 0x87), on 3.1.1 an
// acknowledgement (the message is dropped: a refusal cannot be seen).
func TestMosquittoRefusal(t *testing.T) {
	b := aclBroker(t)
	for _, proto := range []int{4, 5} {
		o := config.Default().Broker
		o.URLs, o.ClientID, o.Availability.Topic = []string{b.url()}, "refusal-test", ""
		s, err := session.New(session.Options{Broker: o, Protocol: proto}, slog.New(slog.DiscardHandler), metrics.New("t"), metrics.NewLiveness(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		var c *session.Conn
		for deadline := time.Now().Add(10 * time.Second); c == nil; {
			if c, _ = s.Current(); c == nil {
				if time.Now().After(deadline) {
					t.Fatal("not connected")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		outcome := func(topic string) error {
			tok := c.Publish(topic, 1, false, []byte("1"))
			select {
			case <-tok.Done():
				return tok.Error()
			case <-time.After(5 * time.Second):
				t.Fatalf("v%d %s: no outcome", proto, topic)
				return nil
			}
		}
		denied, allowed := outcome("denied/x"), outcome("allowed/x")
		var refused *session.RefusedError
		switch proto {
		case 5:
			if !errors.As(denied, &refused) || refused.Code != 0x87 {
				t.Errorf("v5 denied publish: %v, want a refusal 0x87", denied)
			}
		case 4:
			if denied != nil {
				t.Errorf("v3.1.1 denied publish: %v, want an acknowledgement", denied)
			}
		}
		if allowed != nil {
			t.Errorf("v%d allowed publish: %v", proto, allowed)
		}
		t.Logf("mosquitto, MQTT v%d: denied publish -> %v; allowed -> %v", proto, denied, allowed)
		cancel()
		<-done
	}
}
