package gateway

import (
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
)

// MaxLoggedPayload is how much of a payload is shown in the log.
const MaxLoggedPayload = 256

// Log rate limit for received messages: a burst, then a steady rate. Every
// message is still counted; the ones not logged are counted too, and their
// number is logged when logging resumes.
const (
	logBurst = 200
	logRate  = 50 // per second
)

// MessageLogger logs every message that arrives on a subscription, safely
// whatever its bytes, and counts it by the subscription it matched.
type MessageLogger struct {
	log       *slog.Logger
	subs      atomic.Pointer[[]subscription]
	unmatched prometheus.Counter
	m         *metrics.Metrics

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
	now        func() time.Time
}

type subscription struct {
	filter  string
	levels  []string
	counter prometheus.Counter
}

// NewMessageLogger returns a logger for the configured subscriptions.
func NewMessageLogger(subs []config.Subscription, m *metrics.Metrics, log *slog.Logger) *MessageLogger {
	l := &MessageLogger{log: log, m: m, tokens: logBurst, now: time.Now}
	l.SetSubscriptions(subs)
	// Messages the broker still delivers for a subscription that is no
	// longer in the config (the persistent session remembers it).
	l.unmatched = m.MQTTReceived.WithLabelValues("")
	return l
}

// SetSubscriptions changes the subscriptions messages are counted by (a
// reload). The counters of a subscription removed stay: a counter does not
// go back to zero while the daemon runs.
func (l *MessageLogger) SetSubscriptions(subs []config.Subscription) {
	list := make([]subscription, 0, len(subs))
	for _, s := range subs {
		list = append(list, subscription{
			filter:  s.Topic,
			levels:  strings.Split(s.Topic, "/"),
			counter: l.m.MQTTReceived.WithLabelValues(s.Topic),
		})
		l.m.MQTTSubscribeFailures.WithLabelValues(s.Topic) // export 0 from the start
	}
	l.subs.Store(&list)
}

// Handle counts and logs one message. It never blocks for long: it is
// called from the MQTT client's goroutine.
func (l *MessageLogger) Handle(msg session.Message) {
	matched := false
	subs := *l.subs.Load()
	for i := range subs {
		if topicMatch(subs[i].levels, msg.Topic) {
			subs[i].counter.Inc()
			matched = true
		}
	}
	if !matched {
		l.unmatched.Inc()
	}
	ok, suppressed := l.allow()
	if !ok {
		l.m.MQTTLogSuppressed.Inc()
		return
	}
	if suppressed > 0 {
		l.log.Warn("messages received but not logged (log rate limit)", "count", suppressed)
	}
	payload, format := RenderPayload(msg.Payload)
	topic, _ := RenderPayload([]byte(msg.Topic))
	attrs := []any{
		"topic", topic,
		"qos", msg.QoS,
		"retained", msg.Retained,
		"bytes", len(msg.Payload),
		"payload", payload,
	}
	if format != "text" {
		attrs = append(attrs, "payload_format", format)
	}
	if len(msg.Payload) > MaxLoggedPayload {
		attrs = append(attrs, "truncated", true)
	}
	l.log.Info("message received", attrs...)
}

// allow takes a token from the bucket; it returns how many messages went
// unlogged since the last one that was logged.
func (l *MessageLogger) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(logBurst, l.tokens+now.Sub(l.last).Seconds()*logRate)
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	n := l.suppressed
	l.suppressed = 0
	return true, n
}

// RenderPayload shows a payload safely in one log value: valid UTF-8 as
// text with control, line-breaking and bidirectional characters escaped
// (so that a payload cannot forge or hide log lines), anything else as hex;
// either cut at MaxLoggedPayload bytes of the payload. format is "text" or
// "hex".
func RenderPayload(p []byte) (s string, format string) {
	cut := p
	if len(cut) > MaxLoggedPayload {
		cut = cut[:MaxLoggedPayload]
		// Do not count a character split by the cut as invalid UTF-8.
		for i := 0; i < utf8.UTFMax && len(cut) > 0 && !utf8.Valid(cut); i++ {
			cut = cut[:len(cut)-1]
		}
	}
	if !utf8.Valid(cut) {
		if len(p) > MaxLoggedPayload {
			return hex.EncodeToString(p[:MaxLoggedPayload]), "hex"
		}
		return hex.EncodeToString(p), "hex"
	}
	var b strings.Builder
	b.Grow(len(cut))
	for _, r := range string(cut) {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 ||
			(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0xfeff:
			b.WriteString(`\u`)
			const hexDigits = "0123456789abcdef"
			b.WriteByte(hexDigits[r>>12&0xf])
			b.WriteByte(hexDigits[r>>8&0xf])
			b.WriteByte(hexDigits[r>>4&0xf])
			b.WriteByte(hexDigits[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	return b.String(), "text"
}

// topicMatch reports whether topic matches the filter split into levels,
// as MQTT 3.1.1 section 4.7 defines it: '+' one level, '#' the rest
// (including the parent), and a topic starting with '$' matches no filter
// starting with a wildcard.
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
			// The topic ends here: it matches if the filter ends too, or
			// continues only with "#".
			return i == len(filter)-1 || (i == len(filter)-2 && filter[i+1] == "#")
		}
		topic = rest
	}
	return false
}
