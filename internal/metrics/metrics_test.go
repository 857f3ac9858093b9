package metrics

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestLiveness(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLiveness(15 * time.Second)
	l.now = func() time.Time { return now }
	l.Beat("poller")
	l.Beat("session")
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(10 * time.Second)
	l.Beat("session")
	now = now.Add(10 * time.Second) // poller silent for 20s
	err := l.Check()
	if err == nil || !strings.Contains(err.Error(), "poller (20s)") || strings.Contains(err.Error(), "session") {
		t.Fatalf("Check = %v", err)
	}
	l.Done("poller")
	if err := l.Check(); err != nil {
		t.Fatalf("after Done: %v", err)
	}
}

func TestSensorSetExposition(t *testing.T) {
	m := New("test")
	st := m.Sensors.Sensor("room")
	temp := st.Series("temperature")
	st.Series("humidity") // no value yet: no gatewayd_sensor_value for it
	st.Succeeded(1_700_000_000_500_000_000)
	temp.SetValue(21.5)
	temp.Suppressed.Add(2)
	st.Failed()
	m.Sensors.Sensor("cellar")
	m.Sensors.Sensor("gone").Series("temperature").SetValue(1)
	m.Sensors.Remove("gone") // removed from the config by a reload
	if m.Sensors.Sensor("room") != st || st.Series("temperature") != temp {
		t.Fatal("a sensor's or a series' counters were not kept")
	}
	var b strings.Builder
	if err := m.Sensors.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP gatewayd_sensor_reads_total Successful sensor reads.
# TYPE gatewayd_sensor_reads_total counter
gatewayd_sensor_reads_total{sensor="room"} 1
gatewayd_sensor_reads_total{sensor="cellar"} 0
# HELP gatewayd_sensor_read_errors_total Failed sensor reads (errors and timeouts).
# TYPE gatewayd_sensor_read_errors_total counter
gatewayd_sensor_read_errors_total{sensor="room"} 1
gatewayd_sensor_read_errors_total{sensor="cellar"} 0
# HELP gatewayd_sensor_up 1 when the sensor's last read succeeded (push sensors: heard within stale_after), else 0.
# TYPE gatewayd_sensor_up gauge
gatewayd_sensor_up{sensor="room"} 0
gatewayd_sensor_up{sensor="cellar"} 0
# HELP gatewayd_sensor_last_success_timestamp_seconds Unix time of the sensor's last successful read (push sensors: last heard).
# TYPE gatewayd_sensor_last_success_timestamp_seconds gauge
gatewayd_sensor_last_success_timestamp_seconds{sensor="room"} 1.7000000005e+09
gatewayd_sensor_last_success_timestamp_seconds{sensor="cellar"} 0
# HELP gatewayd_sensor_value The last value read, after calibration.
# TYPE gatewayd_sensor_value gauge
gatewayd_sensor_value{quantity="temperature",sensor="room"} 21.5
# HELP gatewayd_sensor_values_rejected_total Values rejected as outside the quantity's physical range (or not a number).
# TYPE gatewayd_sensor_values_rejected_total counter
gatewayd_sensor_values_rejected_total{quantity="temperature",sensor="room"} 0
gatewayd_sensor_values_rejected_total{quantity="humidity",sensor="room"} 0
# HELP gatewayd_sensor_values_suppressed_total Values not published: within the deadband, or (push sensors) a repeat of one transmission or sooner than the interval.
# TYPE gatewayd_sensor_values_suppressed_total counter
gatewayd_sensor_values_suppressed_total{quantity="temperature",sensor="room"} 2
gatewayd_sensor_values_suppressed_total{quantity="humidity",sensor="room"} 0
`
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestMetricsEndpointParsesAndLints serves /metrics (plain and gzipped)
// and checks it with the text parser and promlint.
func TestMetricsEndpointParsesAndLints(t *testing.T) {
	m := New("test")
	for i := 0; i < 3; i++ {
		st := m.Sensors.Sensor(fmt.Sprintf("s%d", i))
		st.Succeeded(time.Now().UnixNano())
		st.Series("temperature").SetValue(20.5)
	}
	s := NewServer(m, NewLiveness(time.Minute), func() bool { return true }, "v1", slog.New(slog.DiscardHandler))
	for _, gz := range []bool{false, true} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		s.srv.Handler.ServeHTTP(rec, req)
		var body io.Reader = rec.Body
		if gz {
			if rec.Header().Get("Content-Encoding") != "gzip" {
				t.Fatal("not gzipped")
			}
			zr, err := gzip.NewReader(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		}
		text, _ := io.ReadAll(body)
		p := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
		if err != nil {
			t.Fatalf("gzip %v: %v\n%s", gz, err, text)
		}
		for _, name := range []string{"gatewayd_sensor_value", "gatewayd_mqtt_connected", "gatewayd_build_info", "go_goroutines"} {
			if fams[name] == nil {
				t.Errorf("no %s", name)
			}
		}
		problems, err := promlint.New(bytes.NewReader(text)).Lint()
		if err != nil || len(problems) > 0 {
			t.Fatalf("promlint: %v %v", err, problems)
		}
	}
}

func TestHealthzReportsStalledLoop(t *testing.T) {
	m := New("test")
	l := NewLiveness(time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	l.Beat("publisher")
	s := NewServer(m, l, func() bool { return false }, "v1", slog.New(slog.DiscardHandler))
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		s.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	now = now.Add(5 * time.Second)
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "publisher") {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Fatalf("/readyz = %d", code)
	}
	if code, body := get("/"); code != 200 || !strings.Contains(body, "gatewayd v1") {
		t.Fatalf("/ = %d %q", code, body)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Fatalf("/nope = %d", code)
	}
}
