//go:build faults

package faults

import (
	"context"
	"errors"
	"fmt"
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

// r. The broker's ACL denies the topics of one sensor (s09) while the
// others publish: on MQTT 5 each of its readings is refused, dropped and
// counted, and the other series flow, complete; on 3.1.1 mosquitto
// acknowledges and drops them, so gatewayd counts them as published and
// they are lost unseen.
func TestRefusedReadings(t *testing.T) {
	row := newRow(t, "r", "the broker's ACL denies one sensor's topics (s09)")
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte("topic readwrite #\ntopic deny gatewayd/fr/s09/#\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, "fr", autosaveShort, gwConfig{}, "acl_file "+acl)
	r.series = 2 * (numSensors - 1)
	g := startGatewayd(t, r.config)
	warmUp(g)
	m, tl := r.finish(g, row)
	published, refusedN := m.get("gatewayd_mqtt_messages_published_total"), refused(m)
	// s09's readings: two quantities per read.
	denied := 2 * m.get(`gatewayd_sensor_reads_total{sensor="s09"}`)
	if tl.Series != 2*(numSensors-1) || tl.Missing > 0 || tl.Conflicts > 0 || tl.OutOfOrder > 0 {
		t.Errorf("subscriber: %s", tl)
	}
	switch protocol {
	case 5:
		if refusedN < denied-inFlightAtRest || refusedN > denied {
			t.Errorf("refused %v, want s09's %v readings (less the few in flight)", refusedN, denied)
		}
		if m.get(`gatewayd_mqtt_publish_refused_total{reason="not_authorized"}`) != refusedN {
			t.Errorf("refusals not all not_authorized: %v", m)
		}
		if float64(tl.Distinct) < published {
			t.Errorf("subscriber saw %d distinct readings, gatewayd had %v acknowledged", tl.Distinct, published)
		}
		if _, ok := g.findLog(g.started, "the broker refused a reading; dropped"); !ok {
			t.Error("refusal not logged")
		}
		row.Lost = fmt.Sprintf("%d; s09's %.0f readings refused (0x87) and counted, none published", tl.Missing, refusedN)
	case 4:
		if refusedN != 0 {
			t.Errorf("refused %v on MQTT 3.1.1", refusedN)
		}
		row.Lost = fmt.Sprintf("%d in the 18 series delivered; s09's %.0f readings acknowledged by mosquitto and dropped: counted as published, never seen (3.1.1 has no refusal)", tl.Missing, denied)
	}
}
