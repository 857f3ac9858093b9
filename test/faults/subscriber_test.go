//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
)

// subscriber is the witness: an MQTT client with a persistent session
// (clean_session false, QoS 1) built on gatewayd's own session package. It
// records, per sensor and quantity, every seq that arrived and the
// reading's time, so that gaps, duplicates and reordering show.
type subscriber struct {
	t        *testing.T
	url      string
	clientID string
	gateway  string
	// subscribed is when the subscription was last known to be in place.
	subscribed time.Time

	mu     sync.Mutex
	series map[string]*seriesSeen // "s03/humidity"
	probes map[string]bool
	nprobe int

	sess   *session.Session
	cancel context.CancelFunc
	done   chan struct{}
}

type seriesSeen struct {
	times      map[uint64]time.Time // seq -> time of the reading that first arrived with it
	maxSeq     uint64
	dups       int // a seq that arrived again (a resend): allowed
	conflicts  int // a seq that arrived again with another reading's time
	outOfOrder int // a seq that first arrived after a higher one
}

// newSubscriber connects a subscriber to gatewayd/<gateway>/+/+ and waits
// until its subscription is in place.
func newSubscriber(t *testing.T, url, clientID, gateway string) *subscriber {
	t.Helper()
	s := &subscriber{t: t, url: url, clientID: clientID, gateway: gateway,
		series: map[string]*seriesSeen{}, probes: map[string]bool{}}
	t.Cleanup(s.stop)
	s.start()
	return s
}

// start (re)connects with the same client id: the broker then delivers
// what it queued for the session while the subscriber was away.
func (s *subscriber) start() {
	s.t.Helper()
	b := config.Default().Broker
	b.URLs = []string{s.url}
	b.ClientID = s.clientID
	b.CleanSession = false
	b.Keepalive = config.Duration(2 * time.Second)
	b.ConnectTimeout = config.Duration(2 * time.Second)
	b.ReconnectMaxInterval = config.Duration(500 * time.Millisecond)
	b.Availability.Topic = ""
	sess, err := session.New(session.Options{
		Broker:        b,
		Subscriptions: []config.Subscription{{Topic: "gatewayd/" + s.gateway + "/+/+", QoS: 1}},
		OnMessage:     s.handle,
	}, slog.New(slog.DiscardHandler), metrics.New("faults-subscriber"), metrics.NewLiveness(time.Hour))
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.sess, s.cancel, s.done = sess, cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		sess.Run(ctx)
	}()
	s.probe(20 * time.Second)
	s.subscribed = time.Now()
}

// stop disconnects; the broker keeps the session and queues for it.
func (s *subscriber) stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
		s.cancel = nil
	}
}

// probe publishes a marker on a topic of its own subscription and waits
// until it comes back. The broker delivers a session's messages in order,
// so when the marker arrives, so has everything queued before it.
func (s *subscriber) probe(timeout time.Duration) {
	s.t.Helper()
	s.mu.Lock()
	s.nprobe++
	id := fmt.Sprintf("probe-%d", s.nprobe)
	s.mu.Unlock()
	deadline := time.Now().Add(timeout)
	var sent time.Time
	for {
		s.mu.Lock()
		arrived := s.probes[id]
		s.mu.Unlock()
		if arrived {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("subscriber %s: probe not back within %s", s.clientID, timeout)
		}
		if conn, _ := s.sess.Current(); conn != nil && time.Since(sent) > time.Second {
			conn.Publish("gatewayd/"+s.gateway+"/probe/x", 1, false, []byte(id))
			sent = time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// handle runs on the MQTT client's goroutine, once per message.
func (s *subscriber) handle(m session.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.HasSuffix(m.Topic, "/probe/x") {
		s.probes[string(m.Payload)] = true
		return
	}
	var r struct {
		Sensor   string `json:"sensor"`
		Quantity string `json:"quantity"`
		Time     string `json:"time"`
		Seq      uint64 `json:"seq"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil || r.Seq == 0 {
		s.t.Errorf("not a reading on %s: %q", m.Topic, m.Payload)
		return
	}
	if want := "gatewayd/" + s.gateway + "/" + r.Sensor + "/" + r.Quantity; m.Topic != want {
		s.t.Errorf("reading of %s/%s on topic %s", r.Sensor, r.Quantity, m.Topic)
	}
	ts, err := time.Parse(time.RFC3339Nano, r.Time)
	if err != nil {
		s.t.Errorf("reading time %q: %v", r.Time, err)
	}
	k := r.Sensor + "/" + r.Quantity
	ser := s.series[k]
	if ser == nil {
		ser = &seriesSeen{times: map[uint64]time.Time{}}
		s.series[k] = ser
	}
	if prev, ok := ser.times[r.Seq]; ok {
		ser.dups++
		if !prev.Equal(ts) {
			ser.conflicts++
		}
		return
	}
	if r.Seq < ser.maxSeq {
		ser.outOfOrder++
	}
	ser.times[r.Seq] = ts
	ser.maxSeq = max(ser.maxSeq, r.Seq)
}

// tally is what the subscriber saw, summed over the series.
type tally struct {
	Series, Distinct            int
	Dups, Conflicts, OutOfOrder int
	Missing                     int
	missing                     map[string][]uint64 // series -> missing seqs
}

// tally counts, for every series, the seqs missing between 1 and the
// highest that arrived.
func (s *subscriber) tally() tally {
	s.mu.Lock()
	defer s.mu.Unlock()
	tl := tally{Series: len(s.series), missing: map[string][]uint64{}}
	for k, ser := range s.series {
		tl.Distinct += len(ser.times)
		tl.Dups += ser.dups
		tl.Conflicts += ser.conflicts
		tl.OutOfOrder += ser.outOfOrder
		for q := uint64(1); q <= ser.maxSeq; q++ {
			if _, ok := ser.times[q]; !ok {
				tl.missing[k] = append(tl.missing[k], q)
				tl.Missing++
			}
		}
	}
	return tl
}

// String describes the missing seqs briefly, as ranges.
func (tl tally) String() string {
	keys := make([]string, 0, len(tl.missing))
	for k := range tl.missing {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d series, %d distinct, %d duplicates, %d conflicting, %d out of order, %d missing",
		tl.Series, tl.Distinct, tl.Dups, tl.Conflicts, tl.OutOfOrder, tl.Missing)
	for i, k := range keys {
		if i == 4 {
			b.WriteString(" ...")
			break
		}
		fmt.Fprintf(&b, "; %s: %s", k, ranges(tl.missing[k]))
	}
	return b.String()
}

// ranges formats sorted numbers as "3-7 9".
func ranges(ns []uint64) string {
	var parts []string
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(ns[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ns[i], ns[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, " ")
}

// checkComplete fails the test unless every seq from 1 arrived, first
// arrivals in order, with no seq carrying two different readings, and the
// subscriber got at least every reading the final counters call published.
func checkComplete(t *testing.T, m metricsSnap, tl tally) {
	t.Helper()
	if tl.Series != 2*numSensors {
		t.Errorf("readings of %d series arrived, want %d", tl.Series, 2*numSensors)
	}
	if tl.Missing > 0 || tl.Conflicts > 0 || tl.OutOfOrder > 0 {
		t.Errorf("subscriber: %s", tl)
	}
	if pub := m.get("gatewayd_mqtt_messages_published_total"); float64(tl.Distinct) < pub {
		t.Errorf("subscriber saw %d distinct readings, gatewayd had %v acknowledged", tl.Distinct, pub)
	}
}

// waitFresh waits until every series delivered a reading taken at or after
// since: the subscriber is then live, and (the broker delivering each
// session's messages in order) holds everything taken before.
func (s *subscriber) waitFresh(since time.Time, series int) {
	s.t.Helper()
	if series == 0 {
		series = 2 * numSensors
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		fresh := 0
		s.mu.Lock()
		for _, ser := range s.series {
			if !ser.times[ser.maxSeq].Before(since) {
				fresh++
			}
		}
		s.mu.Unlock()
		if fresh == series {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("subscriber: %d of %d series delivered readings taken after %s", fresh, series, since.Format(time.RFC3339Nano))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seriesTimes returns, per series, the seqs and reading times that arrived.
func (s *subscriber) seriesTimes() map[string]map[uint64]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[uint64]time.Time, len(s.series))
	for k, ser := range s.series {
		m := make(map[uint64]time.Time, len(ser.times))
		for q, ts := range ser.times {
			m[q] = ts
		}
		out[k] = m
	}
	return out
}
