package metrics

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"time"
)

// The status page is one html/template with its CSS inline: no external
// assets, no build step, no JavaScript (a meta refresh reloads it).
//
//go:embed status.html
var statusHTML string

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"dur":       formatSeconds,
	"ago":       func(t, now time.Time) string { return formatSeconds(now.Sub(t).Seconds()) },
	"clock":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"iso":       func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"num":       formatValue,
	"bytes":     formatBytes,
	"deref":     func(f *float64) float64 { return *f },
	"derefTime": func(t *time.Time) time.Time { return *t },
}).Parse(statusHTML))

// pageSensors bounds the sensors listed on the page; /api/status has all.
const pageSensors = 1000

// pageRefresh is how often the page reloads itself, in seconds.
const pageRefresh = 10

type pageData struct {
	S         Status
	Up, Down  int
	DownNames []string // the first few
	Shown     []SensorStatus
	Hidden    int
	Refresh   int
}

func (s *Server) statusPage(w http.ResponseWriter, _ *http.Request) {
	st := s.status.Status()
	d := pageData{S: st, Shown: st.Sensors, Refresh: pageRefresh}
	for _, se := range st.Sensors {
		if se.Up {
			d.Up++
			continue
		}
		d.Down++
		if len(d.DownNames) < 10 {
			d.DownNames = append(d.DownNames, se.Name)
		}
	}
	if len(d.Shown) > pageSensors {
		d.Hidden = len(d.Shown) - pageSensors
		d.Shown = d.Shown[:pageSensors]
	}
	var b bytes.Buffer
	if err := statusPage.Execute(&b, d); err != nil {
		s.log.Error("rendering the status page", "err", err)
		http.Error(w, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Nothing but the page's own inline CSS may load or run.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(b.Bytes())
}

// formatSeconds says a duration the way a person reads it: 42s, 4m 10s,
// 3h 5m, 2d 4h.
func formatSeconds(sec float64) string {
	if math.IsNaN(sec) || sec < 0 {
		sec = 0
	}
	if sec < 10 {
		return strconv.FormatFloat(math.Floor(sec*10)/10, 'f', -1, 64) + "s"
	}
	n := int64(sec)
	switch {
	case n < 60:
		return fmt.Sprintf("%ds", n)
	case n < 3600:
		return fmt.Sprintf("%dm %ds", n/60, n%60)
	case n < 86400:
		return fmt.Sprintf("%dh %dm", n/3600, n%3600/60)
	}
	return fmt.Sprintf("%dd %dh", n/86400, n%86400/3600)
}

// formatValue prints a reading with at most 3 decimals, as published.
func formatValue(v float64) string {
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}

func formatBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
