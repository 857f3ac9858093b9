package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fixedStatus is a StatusSource that returns one snapshot.
type fixedStatus Status

func (f *fixedStatus) Status() Status { return Status(*f) }

func exampleStatus() Status {
	now := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	last := now.Add(-3 * time.Second)
	age := 3.0
	errAt := now.Add(-90 * time.Second)
	return Status{
		Gateway: "box-1", Version: "1.2.3", Time: now, Started: now.Add(-2 * time.Hour), Healthy: true,
		Broker: BrokerStatus{Connected: false, URL: "tcp://broker.lan:1883", Since: now.Add(-5 * time.Minute),
			Connects: 3, Reconnects: 2, ConnectionLost: 3, ConnectFailures: 7, LastError: "EOF", Protocol: 5, Refused: 3},
		Buffer: BufferStatus{Waiting: 1200, Bytes: 150 << 10, OldestAgeSeconds: 301, Dropped: 4, Durable: true},
		Sensors: []SensorStatus{
			{Name: "living-room", Type: "simulated", Up: true, Reads: 42, LastReading: &last, AgeSeconds: &age,
				Values: []Value{{"temperature", 21.53, "°C"}, {"humidity", 45.2, "%"}}},
			{Name: "cellar", Type: "exec", Up: false, Failures: 9, Values: []Value{},
				LastError: `exit status 1 <script>alert(1)</script>`, LastErrorTime: &errAt},
		},
	}
}

func get(t *testing.T, s *Server, path string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec, string(b)
}

func TestStatusPage(t *testing.T) {
	s := NewServer(New("test"), NewLiveness(time.Minute), func() bool { return false }, "v1", slog.New(slog.DiscardHandler))
	src := fixedStatus(exampleStatus())
	s.SetStatus(&src)
	rec, body := get(t, s, "/")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("/ = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	for _, want := range []string{
		"<h1>gatewayd <span class=\"muted\">box-1</span></h1>",
		"badge bad\">disconnected", "tcp://broker.lan:1883 <span class=\"muted\">MQTT 5</span>", "Down since", "3 readings (dropped)", "(5m 0s)",
		"<dt>Reconnects</dt><dd>2</dd>", "<dt>Failed attempts</dt><dd>7</dd>", "<dd class=\"err\">EOF</dd>",
		"1200 readings (150.0 KiB)", "5m 1s old", "<span class=\"err\">4</span>", "on disk (durable)",
		"<strong>living-room</strong> <span class=\"muted\">simulated</span>",
		"21.53 °C <span class=\"muted\">temperature</span>", "45.2 % <span class=\"muted\">humidity</span>",
		"3s ago", "42 reads, 0 failed",
		"<strong>cellar</strong> <span class=\"muted\">exec</span>", "badge bad\">down", "never", "Down: cellar",
		"exit status 1 &lt;script&gt;alert(1)&lt;/script&gt;", "(1m 30s ago)",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in the page", want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("the page has a script or an external reference")
	}

	rec, body = get(t, s, "/api/status")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("/api/status = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	sensors := got["sensors"].([]any)
	cellar := sensors[1].(map[string]any)
	room := sensors[0].(map[string]any)
	if got["gateway"] != "box-1" || got["broker"].(map[string]any)["url"] != "tcp://broker.lan:1883" ||
		got["buffer"].(map[string]any)["oldest_age_seconds"] != 301.0 ||
		cellar["last_reading"] != nil || cellar["age_seconds"] != nil || cellar["up"] != false ||
		room["values"].([]any)[0].(map[string]any)["unit"] != "°C" || room["age_seconds"] != 3.0 {
		t.Errorf("/api/status:\n%s", body)
	}
}

// TestStatusPageWithoutSource keeps the page of links for a server that was
// given no status (as in -once).
func TestStatusPageWithoutSource(t *testing.T) {
	s := NewServer(New("test"), NewLiveness(time.Minute), func() bool { return false }, "v1", slog.New(slog.DiscardHandler))
	if rec, body := get(t, s, "/"); rec.Code != 200 || !strings.Contains(body, "gatewayd v1") {
		t.Fatalf("/ = %d %q", rec.Code, body)
	}
	if rec, _ := get(t, s, "/api/status"); rec.Code != 404 {
		t.Fatalf("/api/status = %d", rec.Code)
	}
}

func TestFormatSeconds(t *testing.T) {
	for sec, want := range map[float64]string{0: "0s", 0.25: "0.2s", 9.99: "9.9s", 42: "42s", 250: "4m 10s", 3*3600 + 301: "3h 5m", 2*86400 + 4*3600: "2d 4h", -5: "0s"} {
		if got := formatSeconds(sec); got != want {
			t.Errorf("formatSeconds(%v) = %q, want %q", sec, got, want)
		}
	}
}

// TestStatusPageBounded lists at most pageSensors sensors and says how many
// more /api/status has.
func TestStatusPageBounded(t *testing.T) {
	s := NewServer(New("test"), NewLiveness(time.Minute), func() bool { return true }, "v1", slog.New(slog.DiscardHandler))
	st := exampleStatus()
	st.Sensors = nil
	for i := 0; i < pageSensors+5; i++ {
		st.Sensors = append(st.Sensors, SensorStatus{Name: fmt.Sprintf("s%d", i), Type: "simulated", Up: i != 3, Values: []Value{}})
	}
	src := fixedStatus(st)
	s.SetStatus(&src)
	_, body := get(t, s, "/")
	if n := strings.Count(body, "data-sensor="); n != pageSensors {
		t.Errorf("%d sensor rows, want %d", n, pageSensors)
	}
	if !strings.Contains(body, "… and 5 more sensors") || !strings.Contains(body, "Sensors (1005)") || !strings.Contains(body, "Down: s3</p>") {
		t.Error("the page does not say how many sensors it leaves out, or which is down")
	}
}
