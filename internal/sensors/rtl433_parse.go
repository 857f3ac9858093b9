package sensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// What rtl_433 prints with -F json: one JSON object per line and per
// decoded transmission, e.g. (rtl_433 22.11)
//
//	{"time" : "@0.091892s", "model" : "Nexus-TH", "id" : 181, "channel" : 2, "battery_ok" : 0, "temperature_C" : 19.000, "humidity" : 71}
//
// model names the decoder; id (a number, or a string for some devices) and
// channel (a number or a letter) tell devices of one model apart. The
// fields gatewayd publishes are listed in rtlFields; the others (time, mic,
// rssi, wind, rain ...) are ignored. The lines are outside input: a
// decoder's bug, a truncated write or another program on the pipe must
// give an error, never a panic.

// rtlMaxLine bounds a line; rtl_433's are well under 1 KiB.
const rtlMaxLine = 16 << 10

// rtlMessage is one parsed line.
type rtlMessage struct {
	model, id, channel string // id and channel normalised (rtlKey); "" when absent
	readings           []Reading
}

// Why a line is skipped.
var (
	errRTLNotJSON  = errors.New("not a JSON object")
	errRTLNoModel  = errors.New(`no "model": not a device message`)
	errRTLTooLong  = fmt.Errorf("longer than %d bytes", rtlMaxLine)
	errRTLHalfLine = errors.New("the line was cut off (no newline before the end of the output)")
)

// parseRTL433 parses one line of rtl_433's JSON output.
func parseRTL433(line []byte) (rtlMessage, error) {
	var m rtlMessage
	line = bytes.TrimSpace(line)
	if len(line) > rtlMaxLine {
		return m, errRTLTooLong
	}
	if len(line) == 0 || line[0] != '{' {
		return m, errRTLNotJSON
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil {
		return m, fmt.Errorf("%w: %v", errRTLNotJSON, err)
	}
	model, ok := rtlString(fields["model"])
	if !ok || model == "" {
		return m, errRTLNoModel
	}
	m.model = model
	if v, ok := fields["id"]; ok {
		m.id = rtlKey(v)
	}
	if v, ok := fields["channel"]; ok {
		m.channel = rtlKey(v)
	}
	for _, f := range rtlFields {
		if _, done := m.has(f.quantity); done {
			continue // temperature_C is there; temperature_F is not needed
		}
		v, ok := rtlNumber(fields[f.field])
		if !ok {
			continue
		}
		v = f.convert(v)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		m.readings = append(m.readings, Reading{Quantity: f.quantity, Value: v})
	}
	return m, nil
}

func (m *rtlMessage) has(quantity string) (float64, bool) {
	for _, r := range m.readings {
		if r.Quantity == quantity {
			return r.Value, true
		}
	}
	return 0, false
}

// rtlFields maps rtl_433's field names to quantities, preferred first.
var rtlFields = []struct {
	field, quantity string
	convert         func(float64) float64
}{
	{"temperature_C", Temperature, func(v float64) float64 { return v }},
	{"temperature_F", Temperature, func(f float64) float64 { return round3((f - 32) * 5 / 9) }},
	{"humidity", Humidity, func(v float64) float64 { return v }},
	{"pressure_hPa", Pressure, func(v float64) float64 { return v }},
	{"pressure_kPa", Pressure, func(v float64) float64 { return round3(v * 10) }},
	// battery_ok is 1 (fine) or 0 (low); the few decoders that report a
	// level from 0 to 1 count as fine from half up.
	{"battery_ok", "battery_ok", func(v float64) float64 {
		if v >= 0.5 {
			return 1
		}
		return 0
	}},
}

// rtlString decodes a JSON string.
func rtlString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// rtlNumber decodes a JSON number that is finite.
func rtlNumber(raw json.RawMessage) (float64, bool) {
	if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

// rtlKey normalises an id or a channel, from the JSON line or from the
// config, so that the two compare equal when they name the same thing: a
// whole number in decimal (181, "0xb5" and 0xb5 are all "181"), anything
// else as its text in lower case ("A" and "a" are "a").
func rtlKey(raw json.RawMessage) string {
	if s, ok := rtlString(raw); ok {
		return rtlKeyString(s)
	}
	return rtlKeyString(string(raw))
}

func rtlKeyString(s string) string {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 0, 64); err == nil {
		return strconv.FormatInt(n, 10)
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strings.ToLower(s)
}
