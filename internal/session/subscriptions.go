package session

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// routes is where received messages go; Update swaps it whole.
type routes struct {
	onMessage func(Message)
	user      [][]string // the user subscriptions' filters, split in levels
	handlers  []route
}

type route struct {
	levels []string
	handle func(Message)
}

func (s *Session) setRoutes(o *Options) {
	r := &routes{onMessage: o.OnMessage}
	for _, sub := range o.Subscriptions {
		r.user = append(r.user, strings.Split(sub.Topic, "/"))
	}
	for _, h := range o.Handlers {
		if h.Handle != nil {
			r.handlers = append(r.handlers, route{strings.Split(h.Filter, "/"), h.Handle})
		}
	}
	s.routes.Store(r)
}

// route hands a received message to the handlers whose filter matches it,
// and to OnMessage unless only handlers' filters match it.
func (s *Session) route(m Message) {
	r := s.routes.Load()
	handled := false
	for i := range r.handlers {
		if topicMatch(r.handlers[i].levels, m.Topic) {
			r.handlers[i].handle(m)
			handled = true
		}
	}
	if handled && !slices.ContainsFunc(r.user, func(f []string) bool { return topicMatch(f, m.Topic) }) {
		return
	}
	r.onMessage(m)
}

// topicMatch reports whether topic matches the filter split into levels
// (MQTT section 4.7): '+' one level, '#' the rest (including the parent),
// and a topic starting with '$' matches no filter starting with a wildcard.
func topicMatch(filter []string, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == "+" || filter[0] == "#") {
		return false
	}
	for i, f := range filter {
		if f == "#" {
			return true
		}
		level, rest, more := strings.Cut(topic, "/")
		if f != "+" && f != level {
			return false
		}
		if !more {
			return i == len(filter)-1 || (i == len(filter)-2 && filter[i+1] == "#")
		}
		topic = rest
	}
	return false
}

// desired is every filter to subscribe, with its QoS.
func desired(o *Options) map[string]byte {
	want := map[string]byte{}
	for _, sub := range o.Subscriptions {
		want[sub.Topic] = max(want[sub.Topic], byte(sub.QoS))
	}
	for _, h := range o.Handlers {
		want[h.Filter] = max(want[h.Filter], h.QoS)
	}
	return want
}

// keepSubscribed keeps the subscriptions of connection c as the options
// say until c is lost: at first, and after every Update, it subscribes
// what is missing and unsubscribes what the broker's session holds beyond
// the options (filters removed by a reload, or by an edit of the config
// between two runs when a state directory remembers them). A request
// without an answer is retried on the same connection with backoff.
func (s *Session) keepSubscribed(c *Conn, clean bool) {
	opts, _ := s.options()
	id := s.clientID(&opts)
	if clean || !c.ack.sessionPresent {
		s.subs.reset(id) // the broker holds no subscription of ours
	}
	done := map[string]byte{} // filter -> QoS requested on this connection
	retries := 0
	for {
		opts, updated := s.options()
		want := desired(&opts)
		var add []Filter
		for f, q := range want {
			if d, ok := done[f]; !ok || d != q {
				add = append(add, Filter{f, q})
			}
		}
		slices.SortFunc(add, func(a, b Filter) int { return strings.Compare(a.Topic, b.Topic) })
		var remove []string
		for _, f := range s.subs.list(id, done) {
			if _, ok := want[f]; !ok {
				remove = append(remove, f)
			}
		}
		var err error
		switch {
		case len(add) > 0:
			err = s.subscribe(c, id, add, done, opts.Broker.Keepalive.D())
		case len(remove) > 0:
			err = s.unsubscribe(c, id, remove, done, opts.Broker.Keepalive.D())
		default:
			select {
			case <-updated:
				continue
			case <-c.lost:
				return
			}
		}
		if c.isLost() {
			return
		}
		if !errors.Is(err, errTimeout) {
			retries = 0
			continue
		}
		// No answer in time, on a connection still up: try again.
		delay := backoff(retries, opts.Broker.ReconnectMaxInterval.D())
		retries++
		s.m.MQTTSubscribeRetries.Inc()
		s.log.Warn("no answer to a subscription request; retrying on this connection", "err", err, "retry_in", delay.Round(time.Millisecond).String())
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.lost:
			t.Stop()
			return
		}
	}
}

// subscribe sends one SUBSCRIBE for add and records the outcome.
//
// The filters are remembered as held before the request goes out: the
// broker may handle the SUBSCRIBE and the connection end before its
// SUBACK is read (a shutdown, a lost link), and a filter the broker holds
// but gatewayd does not remember would never be unsubscribed. One
// remembered but not held costs an UNSUBSCRIBE the broker answers "no
// subscription existed".
func (s *Session) subscribe(c *Conn, id string, add []Filter, done map[string]byte, timeout time.Duration) error {
	topics := make([]string, len(add))
	for i, f := range add {
		topics[i] = f.Topic
	}
	fresh := s.subs.add(id, topics) // those not remembered before
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	codes, err := c.client.subscribe(lostContext(ctx, c), add)
	if err != nil {
		// Lost or unanswered, the broker may hold them: they stay
		// remembered, and the next request (or connection) settles it.
		if c.isLost() {
			return err // the next connection subscribes again
		}
		for _, f := range add {
			s.m.MQTTSubscribeFailures.WithLabelValues(f.Topic).Inc()
		}
		if !errors.Is(err, errTimeout) {
			for _, f := range add {
				done[f.Topic] = f.QoS // the same request would fail the same way
			}
			s.subs.remove(id, fresh) // not sent, or refused whole
			s.log.Error("subscribe failed", "err", err)
		}
		return err
	}
	var refused []string
	for i, f := range add {
		done[f.Topic] = f.QoS
		if code := codes[i]; code >= 0x80 {
			attrs := []any{"subscription", f.Topic}
			if c.protocol == 5 {
				attrs = append(attrs, "reason", ReasonName(code))
			}
			// Logged before it is counted: whoever sees the count finds
			// the line.
			s.log.Error("the broker refused a subscription", attrs...)
			s.m.MQTTSubscribeFailures.WithLabelValues(f.Topic).Inc()
			if slices.Contains(fresh, f.Topic) {
				refused = append(refused, f.Topic)
			}
			continue
		}
		s.log.Debug("subscribed", "subscription", f.Topic, "granted_qos", codes[i])
	}
	if len(refused) > 0 {
		s.subs.remove(id, refused)
	}
	return nil
}

// unsubscribe sends one UNSUBSCRIBE for remove and records the outcome.
func (s *Session) unsubscribe(c *Conn, id string, remove []string, done map[string]byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := c.client.unsubscribe(lostContext(ctx, c), remove)
	if err != nil && (c.isLost() || errors.Is(err, errTimeout)) {
		return err
	}
	if err != nil {
		s.log.Error("unsubscribe failed", "subscriptions", remove, "err", err)
	} else {
		s.log.Info("unsubscribed", "subscriptions", remove)
	}
	for _, f := range remove {
		delete(done, f)
	}
	s.subs.remove(id, remove)
	return nil
}

// lostContext is ctx, also ended when c is lost.
func lostContext(ctx context.Context, c *Conn) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-c.lost:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx
}

// subscriptions are the filters the broker's session holds for a client
// id, as far as gatewayd knows: kept in a file of the state directory when
// there is one, so that the next run can unsubscribe the filters that left
// the config.
type subscriptions struct {
	path string
	log  *slog.Logger

	mu       sync.Mutex
	clientID string
	held     map[string]bool
	warned   bool
}

// subscriptionsFile is the file in the state directory.
const subscriptionsFile = "mqtt-subscriptions.json"

type subscriptionsState struct {
	ClientID string   `json:"client_id"`
	Filters  []string `json:"filters"`
}

func newSubscriptions(dir string, log *slog.Logger) *subscriptions {
	h := &subscriptions{log: log, held: map[string]bool{}}
	if dir == "" {
		return h
	}
	h.path = filepath.Join(dir, subscriptionsFile)
	b, err := os.ReadFile(h.path)
	if err != nil {
		if !os.IsNotExist(err) {
			log.Warn("cannot read the subscriptions of the last run", "err", err)
		}
		return h
	}
	var st subscriptionsState
	if err := json.Unmarshal(b, &st); err != nil {
		log.Warn("cannot read the subscriptions of the last run", "file", h.path, "err", err)
		return h
	}
	h.clientID = st.ClientID
	for _, f := range st.Filters {
		h.held[f] = true
	}
	return h
}

// forLocked makes the set the one of client id (another client id has
// another session: nothing of it is known).
func (h *subscriptions) forLocked(id string) {
	if h.clientID != id {
		h.clientID = id
		clear(h.held)
	}
}

func (h *subscriptions) reset(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forLocked(id)
	if len(h.held) > 0 {
		clear(h.held)
		h.saveLocked()
	}
}

// list returns the filters held, and those of done, sorted.
func (h *subscriptions) list(id string, done map[string]byte) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forLocked(id)
	var out []string
	for f := range h.held {
		out = append(out, f)
	}
	for f := range done {
		if !h.held[f] {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// add remembers filters as held and returns those it did not hold.
func (h *subscriptions) add(id string, filters []string) (added []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forLocked(id)
	for _, f := range filters {
		if !h.held[f] {
			h.held[f] = true
			added = append(added, f)
		}
	}
	if len(added) > 0 {
		h.saveLocked()
	}
	return added
}

func (h *subscriptions) remove(id string, filters []string) {
	if len(filters) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forLocked(id)
	for _, f := range filters {
		delete(h.held, f)
	}
	h.saveLocked()
}

// saveLocked writes the file (a new file renamed over the old one).
func (h *subscriptions) saveLocked() {
	if h.path == "" {
		return
	}
	st := subscriptionsState{ClientID: h.clientID, Filters: []string{}}
	for f := range h.held {
		st.Filters = append(st.Filters, f)
	}
	slices.Sort(st.Filters)
	b, _ := json.Marshal(st)
	tmp := h.path + ".tmp"
	err := os.WriteFile(tmp, append(b, '\n'), 0o600)
	if err == nil {
		err = os.Rename(tmp, h.path)
	}
	if err != nil && !h.warned {
		h.warned = true
		h.log.Warn("cannot remember the subscriptions; filters removed from the config before the next start will stay subscribed", "err", err)
	}
}
