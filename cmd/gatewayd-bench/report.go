package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one figure of the report: gatewayd's, each baseline's (NaN when
// not measured), and the goal with its verdict.
type row struct {
	scenario, figure, unit string
	gw, paho, py           float64
	goal                   string
	verdict                string // "ok", "MISSED" or "" (no goal)
}

var none = math.NaN()

func (b *bench) add(r row) { b.rows = append(b.rows, r) }

// goal records whether a goal was met.
func (b *bench) goal(r row, met bool, goal string) {
	r.goal, r.verdict = goal, "ok"
	if !met {
		r.verdict = "MISSED"
		b.missed++
	}
	b.add(r)
}

func format(v float64, unit string) string {
	if math.IsNaN(v) {
		return "-"
	}
	switch unit {
	case "readings/s":
		return fmt.Sprintf("%.0f", v)
	case "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	case "ms":
		return fmt.Sprintf("%.1f ms", v)
	case "%":
		return fmt.Sprintf("%.3f %%", v)
	case "s/100k":
		return fmt.Sprintf("%.2f s", v)
	case "/s":
		return fmt.Sprintf("%.1f/s", v)
	case "x":
		return fmt.Sprintf("%.2fx", v)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func (b *bench) report(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfigure\tgatewayd\tpaho (Go)\tgw/paho\tpython\tgw/python\tgoal\tverdict")
	for _, r := range b.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.scenario, r.figure,
			format(r.gw, r.unit), format(r.paho, r.unit), ratio(r.gw, r.paho),
			format(r.py, r.unit), ratio(r.gw, r.py), r.goal, r.verdict)
	}
	tw.Flush()
	for _, n := range b.notes {
		fmt.Fprintln(w, "note:", n)
	}
	if b.missed > 0 {
		fmt.Fprintf(w, "goals missed: %d\n", b.missed)
	}
	for _, f := range b.failures {
		fmt.Fprintln(w, "FAILED:", f)
	}
	if len(b.failures) == 0 {
		fmt.Fprintln(w, "every part ran")
	}
}

func mib(n int64) float64        { return float64(n) / (1 << 20) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// describe names a load: "100 sensors @100ms = 2000 readings/s".
func describe(sensors int, interval time.Duration) string {
	return fmt.Sprintf("%d sensors @%s = %.0f readings/s", sensors, interval, 2*float64(sensors)/interval.Seconds())
}

func orNone(ok bool, v float64) float64 {
	if !ok {
		return none
	}
	return v
}

// joinErrs folds the errors of a scenario's parts into one.
func joinErrs(errs []error) error {
	var msgs []string
	for _, e := range errs {
		if e != nil {
			msgs = append(msgs, e.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}
