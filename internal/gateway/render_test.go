package gateway

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

func TestRenderJSON(t *testing.T) {
	s := newSeries("gatewayd/gw/living-room/temperature", "living-room", "temperature")
	at := time.Date(2026, 11, 28, 6, 0, 0, 123_000_000, time.FixedZone("CET", 3600))
	got := string(s.render(FormatJSON, 21.53, at, 17))
	// The spec's example, to the byte; the time is converted to UTC.
	want := `{"sensor":"living-room","quantity":"temperature","value":21.53,"unit":"°C","time":"2026-11-28T05:00:00.123Z","seq":17}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Fatal(err)
	}
}

func TestRenderValueAndUnits(t *testing.T) {
	tests := []struct {
		quantity string
		v        float64
		want     string
	}{
		{"humidity", 40, `40`},
		{"temperature", -0.5, `-0.5`},
		{"pressure", 1013.25, `1013.25`},
		{"co2", 415, `415`},
	}
	for _, tt := range tests {
		s := newSeries("t", "s", tt.quantity)
		if got := string(s.render(FormatValue, tt.v, time.Now(), 1)); got != tt.want {
			t.Errorf("%s: value payload %q, want %q", tt.quantity, got, tt.want)
		}
		var v struct {
			Unit string  `json:"unit"`
			Val  float64 `json:"value"`
		}
		if err := json.Unmarshal(s.render(FormatJSON, tt.v, time.Now(), 1), &v); err != nil || v.Val != tt.v {
			t.Errorf("%s: json %+v %v", tt.quantity, v, err)
		}
	}
}

func TestRenderTopic(t *testing.T) {
	// config resolved {gateway} and {sensor} already.
	got := renderTopic("site/gw1/attic/{quantity}/attic", "humidity")
	if got != "site/gw1/attic/humidity/attic" {
		t.Fatal(got)
	}
}

func TestCalibrate(t *testing.T) {
	s := newSeries("t", "s", "humidity")
	s.scale, s.offset = 1.02, -0.4
	if got := s.calibrate(21.53); got != 21.561 {
		t.Fatalf("calibrate = %v", got)
	}
	if got := s.calibrate(math.Inf(1)); !math.IsInf(got, 1) {
		t.Fatalf("inf = %v", got)
	}
}

func TestDeadbandAndHeartbeat(t *testing.T) {
	s := newSeries("t", "s", "temperature")
	s.deadband = 0.5
	t0 := time.Unix(1000, 0)
	steps := []struct {
		v    float64
		dt   time.Duration
		want bool
	}{
		{20.0, 0, true},                 // first value
		{20.3, time.Second, false},      // within
		{20.5, time.Second, false},      // exactly the deadband is not "more than"
		{20.6, time.Second, true},       // moved by more
		{20.6, 30 * time.Second, false}, // silent, heartbeat not yet
		{20.6, 61 * time.Second, true},  // heartbeat since the last publish
	}
	at := t0
	for i, st := range steps {
		at = t0.Add(st.dt)
		if got := s.due(st.v, at, time.Minute); got != st.want {
			t.Fatalf("step %d (%v): due = %v, want %v", i, st.v, got, st.want)
		}
		if st.want {
			s.published, s.lastValue, s.lastTime = true, st.v, at
			t0 = at
		}
	}
}

// BenchmarkRender is a reading to its payload, in either publish.format.
func BenchmarkRender(b *testing.B) {
	for _, format := range []string{FormatJSON, FormatValue} {
		b.Run(format, func(b *testing.B) {
			s := newSeries("gatewayd/gw/living-room/temperature", "living-room", "temperature")
			at := time.Now()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				_ = s.render(format, 21.53, at, uint64(i))
			}
		})
	}
}

func BenchmarkRenderTopic(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = renderTopic("gatewayd/gw/living-room/{quantity}", "temperature")
	}
}

func TestAppendTime(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 12, 1, 13, 4, 5, 999_999_999, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.FixedZone("CET", 3600)),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 1e6, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // the layout's own form
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, 0),
	} {
		if got, want := string(appendTime(nil, tm)), tm.UTC().Format(timeLayout); got != want {
			t.Errorf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	}
}

func FuzzAppendTime(f *testing.F) {
	f.Add(int64(0), int64(0))
	f.Add(int64(1796000000), int64(999_999_999))
	f.Add(int64(-62135596800), int64(1))
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		tm := time.Unix(sec, nsec)
		if got, want := string(appendTime([]byte("x"), tm)), "x"+tm.UTC().Format(timeLayout); got != want {
			t.Fatalf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	})
}
