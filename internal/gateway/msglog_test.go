package gateway

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
)

func TestRenderPayload(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes: the cut falls inside a character
	tests := []struct {
		name, in, want, format string
	}{
		{"plain", "ON", "ON", "text"},
		{"newline forgery", "x\nlevel=ERROR msg=pwned", `x\nlevel=ERROR msg=pwned`, "text"},
		{"cr and tab", "a\r\tb", `a\r\tb`, "text"},
		{"escape char", "\x1b[31mred", `\u001b[31mred`, "text"},
		{"backslash", `a\nb`, `a\\nb`, "text"},
		{"nul", "a\x00b", `a\u0000b`, "text"},
		{"c1 control", "a\u0085b", `a\u0085b`, "text"},
		{"line separator", "a\u2028b", `a\u2028b`, "text"},
		{"bidi override", "a\u202eb", `a\u202eb`, "text"},
		{"unicode", "température 21°C ✓", "température 21°C ✓", "text"},
		{"binary", "\xff\xfe\x00\x01", "fffe0001", "hex"},
		{"empty", "", "", "text"},
		{"long utf8 cut", long, strings.Repeat("é", 128), "text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, format := RenderPayload([]byte(tt.in))
			if got != tt.want || format != tt.format {
				t.Errorf("RenderPayload(%q) = %q, %s; want %q, %s", tt.in, got, format, tt.want, tt.format)
			}
		})
	}
	got, format := RenderPayload(bytes.Repeat([]byte{0xff}, 1000))
	if format != "hex" || len(got) != 2*MaxLoggedPayload {
		t.Errorf("long binary: %d chars, %s", len(got), format)
	}
}

func FuzzRenderPayload(f *testing.F) {
	for _, s := range []string{"", "ok", "a\nb", "\xff", "é", "\u2028", strings.Repeat("x", 300)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		s, format := RenderPayload(p)
		if !utf8.ValidString(s) {
			t.Fatalf("not UTF-8: %q", s)
		}
		for _, r := range s {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 {
				t.Fatalf("control character %U left in %q", r, s)
			}
		}
		limit := 6 * MaxLoggedPayload // every byte escaped as \u00xx at worst
		if format == "hex" {
			limit = 2 * MaxLoggedPayload
		}
		if len(s) > limit {
			t.Fatalf("%d chars from %d bytes", len(s), len(p))
		}
	})
}

func TestTopicMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a/", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"+/+", "a/b", true},
		{"+", "a/b", false},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/broker/uptime", true},
		{"a/b/c", "a/b", false},
		{"gatewayd/gw/cmd/#", "gatewayd/gw/cmd/reboot", true},
	}
	for _, tt := range tests {
		if got := topicMatch(strings.Split(tt.filter, "/"), tt.topic); got != tt.want {
			t.Errorf("match(%q, %q) = %v", tt.filter, tt.topic, got)
		}
	}
}

func TestMessageLoggerLogsAndCounts(t *testing.T) {
	var buf bytes.Buffer
	m := metrics.New("test")
	l := NewMessageLogger([]config.Subscription{{Topic: "cmd/#", QoS: 1}, {Topic: "cmd/+/x"}}, m, slog.New(slog.NewJSONHandler(&buf, nil)))
	l.Handle(session.Message{Topic: "cmd/a/x", QoS: 1, Payload: []byte("hello\nlevel=ERROR")})
	l.Handle(session.Message{Topic: "other", Payload: []byte{0xff, 0x00}, Retained: true})
	l.Handle(session.Message{Topic: "cmd/big", Payload: bytes.Repeat([]byte("a"), 1000)})

	if got := testutil.ToFloat64(m.MQTTReceived.WithLabelValues("cmd/#")); got != 2 {
		t.Errorf("cmd/# count = %v", got)
	}
	if got := testutil.ToFloat64(m.MQTTReceived.WithLabelValues("cmd/+/x")); got != 1 {
		t.Errorf("cmd/+/x count = %v", got)
	}
	if got := testutil.ToFloat64(m.MQTTReceived.WithLabelValues("")); got != 1 {
		t.Errorf("unmatched count = %v", got)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines for 3 messages:\n%s", len(lines), buf.String())
	}
	var first, second, third map[string]any
	json.Unmarshal([]byte(lines[0]), &first)
	json.Unmarshal([]byte(lines[1]), &second)
	json.Unmarshal([]byte(lines[2]), &third)
	if first["msg"] != "message received" || first["topic"] != "cmd/a/x" || first["payload"] != `hello\nlevel=ERROR` || first["bytes"] != 17.0 || first["qos"] != 1.0 || first["retained"] != false {
		t.Errorf("first line: %v", first)
	}
	if second["payload"] != "ff00" || second["payload_format"] != "hex" || second["retained"] != true {
		t.Errorf("second line: %v", second)
	}
	if len(third["payload"].(string)) != MaxLoggedPayload || third["truncated"] != true || third["bytes"] != 1000.0 {
		t.Errorf("third line: %v", third)
	}
}

func TestMessageLoggerRateLimit(t *testing.T) {
	var buf bytes.Buffer
	m := metrics.New("test")
	l := NewMessageLogger([]config.Subscription{{Topic: "#"}}, m, slog.New(slog.NewTextHandler(&buf, nil)))
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for i := 0; i < 1000; i++ {
		l.Handle(session.Message{Topic: "flood", Payload: []byte("x")})
	}
	if got := testutil.ToFloat64(m.MQTTReceived.WithLabelValues("#")); got != 1000 {
		t.Fatalf("counted %v of 1000", got)
	}
	if got := strings.Count(buf.String(), "message received"); got != logBurst {
		t.Fatalf("logged %d lines in a burst, want %d", got, logBurst)
	}
	if got := testutil.ToFloat64(m.MQTTLogSuppressed); got != 1000-logBurst {
		t.Fatalf("suppressed = %v", got)
	}
	now = now.Add(time.Second) // the bucket refills
	l.Handle(session.Message{Topic: "flood", Payload: []byte("x")})
	if !strings.Contains(buf.String(), "count=800") {
		t.Fatalf("no summary of the suppressed messages:\n%s", buf.String()[len(buf.String())-300:])
	}
}
