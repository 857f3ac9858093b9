package sensors

import (
	"context"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

func intp(v int) *int           { return &v }
func floatp(v float64) *float64 { return &v }

func TestModbusValidate(t *testing.T) {
	temp := map[string]ModbusRegister{Temperature: {Address: intp(1), Table: "input", Format: "int16", Scale: floatp(0.1)}}
	tests := []struct {
		cfg ModbusConfig
		key string
	}{
		{ModbusConfig{URL: "rtu:///dev/ttyUSB0?baud=9600&parity=N&stop=1", Registers: temp}, ""},
		{ModbusConfig{URL: "rtu:///dev/ttyUSB0?baud=4800&parity=e&stop=2&data=8", UnitID: intp(247), Model: "rs-ws-n01"}, ""},
		{ModbusConfig{URL: "tcp://10.0.0.5:502", UnitID: intp(0), Model: "XY-MD02"}, ""},
		{ModbusConfig{URL: "tcp://[fe80::1]", UnitID: intp(255), Model: "srth100", ResponseTimeout: "250ms", Retries: intp(0)}, ""},
		{ModbusConfig{URL: "tcp://gw.local:1502", Model: "kincony-sht30", Registers: map[string]ModbusRegister{"dew_point": {Address: intp(6), Format: "float32", WordOrder: "little"}}}, ""},
		{ModbusConfig{Registers: temp}, "url"},
		{ModbusConfig{URL: "/dev/ttyUSB0", Registers: temp}, "url"},
		{ModbusConfig{URL: "rtu://dev/ttyUSB0", Registers: temp}, "url"},
		{ModbusConfig{URL: "rtu:///dev/../dev/ttyUSB0", Registers: temp}, "url"},
		{ModbusConfig{URL: "rtu:///dev/ttyUSB0?baud=9601", Registers: temp}, "url"},
		{ModbusConfig{URL: "rtu:///dev/ttyUSB0?parity=X", Registers: temp}, "url"},
		{ModbusConfig{URL: "rtu:///dev/ttyUSB0?stop=3", Registers: temp}, "url"},
		{ModbusConfig{URL: "rtu:///dev/ttyUSB0?speed=9600", Registers: temp}, "url"},
		{ModbusConfig{URL: "rtu:///dev/ttyUSB0?baud=9600&baud=4800", Registers: temp}, "url"},
		{ModbusConfig{URL: "tcp://host:99999", Registers: temp}, "url"},
		{ModbusConfig{URL: "tcp://host/path", Registers: temp}, "url"},
		{ModbusConfig{URL: "udp://host", Registers: temp}, "url"},
		{ModbusConfig{URL: "rtu:///dev/ttyUSB0", UnitID: intp(0), Registers: temp}, "unit_id"},
		{ModbusConfig{URL: "rtu:///dev/ttyUSB0", UnitID: intp(248), Registers: temp}, "unit_id"},
		{ModbusConfig{URL: "tcp://h", UnitID: intp(256), Registers: temp}, "unit_id"},
		{ModbusConfig{URL: "tcp://h"}, "registers"},
		{ModbusConfig{URL: "tcp://h", Model: "xy-md03"}, "model"},
		{ModbusConfig{URL: "tcp://h", Model: "xy-md02", ResponseTimeout: "1"}, "response_timeout"},
		{ModbusConfig{URL: "tcp://h", Model: "xy-md02", ResponseTimeout: "1h"}, "response_timeout"},
		{ModbusConfig{URL: "tcp://h", Model: "xy-md02", Retries: intp(-1)}, "retries"},
		{ModbusConfig{URL: "tcp://h", Registers: map[string]ModbusRegister{Temperature: {}}}, "registers.temperature.address"},
		{ModbusConfig{URL: "tcp://h", Registers: map[string]ModbusRegister{Temperature: {Address: intp(65535), Format: "float32"}}}, "registers.temperature.address"},
		{ModbusConfig{URL: "tcp://h", Registers: map[string]ModbusRegister{Temperature: {Address: intp(-1)}}}, "registers.temperature.address"},
		{ModbusConfig{URL: "tcp://h", Registers: map[string]ModbusRegister{Temperature: {Address: intp(1), Table: "coil"}}}, "registers.temperature.table"},
		{ModbusConfig{URL: "tcp://h", Registers: map[string]ModbusRegister{Temperature: {Address: intp(1), Format: "float64"}}}, "registers.temperature.format"},
		{ModbusConfig{URL: "tcp://h", Registers: map[string]ModbusRegister{Temperature: {Address: intp(1), WordOrder: "middle"}}}, "registers.temperature.word_order"},
		{ModbusConfig{URL: "tcp://h", Registers: map[string]ModbusRegister{Temperature: {Address: intp(1), Scale: floatp(0)}}}, "registers.temperature.scale"},
		{ModbusConfig{URL: "tcp://h", Registers: map[string]ModbusRegister{"Temp": {Address: intp(1)}}}, "registers.Temp"},
	}
	for _, tt := range tests {
		checkValidate(t, &tt.cfg, tt.key)
	}
}

func TestDecodeModbus(t *testing.T) {
	f := math.Float32bits(21.5)
	tests := []struct {
		words  []uint16
		format string
		little bool
		want   float64
		err    string
	}{
		{[]uint16{0xff9b}, "int16", false, -101, ""},
		{[]uint16{0xff9b}, "uint16", false, 65435, ""},
		{[]uint16{0xffff, 0xfffe}, "int32", false, -2, ""},
		{[]uint16{0xfffe, 0xffff}, "int32", true, -2, ""},
		{[]uint16{0x0001, 0x0000}, "uint32", false, 65536, ""},
		{[]uint16{0x0001, 0x0000}, "uint32", true, 1, ""},
		{[]uint16{uint16(f >> 16), uint16(f)}, "float32", false, 21.5, ""},
		{[]uint16{uint16(f), uint16(f >> 16)}, "float32", true, 21.5, ""},
		{[]uint16{0x7fc0, 0x0000}, "float32", false, 0, "NaN"},
		{[]uint16{0x7f80, 0x0000}, "float32", false, 0, "NaN or infinity"},
		{[]uint16{1}, "float32", false, 0, "needs 2 registers"},
		{[]uint16{1, 2}, "int16", false, 0, "needs 1 registers"},
	}
	for _, tt := range tests {
		got, err := decodeModbus(tt.words, tt.format, tt.little)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("decode(%04x, %s) = %v, %v; want error %q", tt.words, tt.format, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("decode(%04x, %s, little=%v) = %v, %v; want %v", tt.words, tt.format, tt.little, got, err, tt.want)
		}
	}
}

func FuzzDecodeModbus(f *testing.F) {
	f.Add(uint16(0x7fc0), uint16(0), uint8(4), true)
	f.Add(uint16(0xff9b), uint16(1), uint8(0), false)
	f.Fuzz(func(t *testing.T, a, b uint16, format uint8, little bool) {
		formats := []string{"int16", "uint16", "int32", "uint32", "float32"}
		fm := formats[int(format)%len(formats)]
		for _, words := range [][]uint16{{a}, {a, b}, nil, {a, b, a}} {
			v, err := decodeModbus(words, fm, little)
			if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
				t.Fatalf("decode(%04x, %s) = %v without an error", words, fm, v)
			}
		}
	})
}

func TestModbusBlocks(t *testing.T) {
	cfg := &ModbusConfig{URL: "tcp://h", Registers: map[string]ModbusRegister{
		"a": {Address: intp(1), Table: "input"},
		"b": {Address: intp(2), Table: "input", Format: "float32"}, // 2-3
		"c": {Address: intp(3), Table: "input"},                    // inside b
		"d": {Address: intp(5), Table: "input"},                    // a gap at 4
		"e": {Address: intp(1)},                                    // holding
		"f": {Address: intp(200), Table: "input"},
		"g": {Address: intp(320), Table: "input"}, // 200..320 is more than 125
	}}
	fields, errs := cfg.fields()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var got []string
	for _, b := range modbusBlocks(fields) {
		var names []string
		for _, f := range b.fields {
			names = append(names, f.quantity)
		}
		got = append(got, tableName(b.table)+":"+strconv.Itoa(int(b.addr))+"+"+strconv.Itoa(int(b.count))+"="+strings.Join(names, ""))
	}
	want := "holding:1+1=e input:1+3=abc input:5+1=d input:200+1=f input:320+1=g"
	if strings.Join(got, " ") != want {
		t.Fatalf("blocks = %s\nwant     %s", strings.Join(got, " "), want)
	}
}

// slaveHandler is a Modbus TCP server's register map, per unit id. A unit
// marked dead does not answer: its requests wait until the client gave up.
type slaveHandler struct {
	mu       sync.Mutex
	input    map[uint8]map[uint16]uint16
	holding  map[uint8]map[uint16]uint16
	dead     map[uint8]bool
	requests map[uint8]int
	clients  map[string]bool
	quit     chan struct{}
}

func newSlaveHandler() *slaveHandler {
	return &slaveHandler{
		input: map[uint8]map[uint16]uint16{}, holding: map[uint8]map[uint16]uint16{},
		dead: map[uint8]bool{}, requests: map[uint8]int{}, clients: map[string]bool{}, quit: make(chan struct{}),
	}
}

func (h *slaveHandler) regs(table map[uint8]map[uint16]uint16, unit uint8, addr, n uint16, client string) ([]uint16, error) {
	h.mu.Lock()
	h.requests[unit]++
	h.clients[client] = true
	dead := h.dead[unit]
	h.mu.Unlock()
	if dead {
		select { // no answer: the client times out first
		case <-h.quit:
		case <-time.After(2 * time.Second):
		}
		return nil, modbus.ErrServerDeviceBusy
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := table[unit]
	if !ok {
		return nil, modbus.ErrIllegalFunction
	}
	out := make([]uint16, n)
	for i := range out {
		v, ok := m[addr+uint16(i)]
		if !ok {
			return nil, modbus.ErrIllegalDataAddress
		}
		out[i] = v
	}
	return out, nil
}

func (h *slaveHandler) HandleCoils(*modbus.CoilsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}
func (h *slaveHandler) HandleDiscreteInputs(*modbus.DiscreteInputsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}
func (h *slaveHandler) HandleHoldingRegisters(r *modbus.HoldingRegistersRequest) ([]uint16, error) {
	if r.IsWrite {
		return nil, modbus.ErrIllegalFunction
	}
	return h.regs(h.holding, r.UnitId, r.Addr, r.Quantity, r.ClientAddr)
}
func (h *slaveHandler) HandleInputRegisters(r *modbus.InputRegistersRequest) ([]uint16, error) {
	return h.regs(h.input, r.UnitId, r.Addr, r.Quantity, r.ClientAddr)
}

func (h *slaveHandler) set(unit uint8, f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f()
}

// startTCPSlave runs the library's Modbus TCP server on a free port of
// 127.0.0.1, in process.
func startTCPSlave(t *testing.T, h *slaveHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the library listens itself; the port stays free in between
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{URL: "tcp://" + addr, Timeout: 30 * time.Second, MaxClients: 10, Logger: discardLog}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(h.quit)
		srv.Stop()
	})
	return addr
}

func newModbus(t *testing.T, cfg *ModbusConfig) *Modbus {
	t.Helper()
	src := newSource(t, cfg).(*Modbus)
	t.Cleanup(func() { src.Close() })
	return src
}

// Two transmitters behind one Modbus TCP endpoint (a gateway to their
// RS-485 line): one connection, both read right, 32-bit formats and word
// orders decoded.
func TestModbusTCP(t *testing.T) {
	h := newSlaveHandler()
	f := math.Float32bits(-3.25)
	h.input[1] = map[uint16]uint16{1: 215, 2: 456}                                                         // xy-md02: 21.5 °C, 45.6 %
	h.holding[2] = map[uint16]uint16{10: uint16(f), 11: uint16(f >> 16), 12: 0x0001, 13: 0x86a0, 14: 1013} // float32 little, uint32 big
	addr := startTCPSlave(t, h)

	a := newModbus(t, &ModbusConfig{URL: "tcp://" + addr, Model: "xy-md02"})
	b := newModbus(t, &ModbusConfig{URL: "tcp://" + addr, UnitID: intp(2), Registers: map[string]ModbusRegister{
		Temperature: {Address: intp(10), Format: "float32", WordOrder: "little"},
		"counter":   {Address: intp(12), Format: "uint32"},
		Pressure:    {Address: intp(14), Format: "uint16"},
	}})
	if a.bus != b.bus {
		t.Fatal("two sensors on one endpoint got two buses")
	}
	for i := 0; i < 3; i++ {
		got, err := readWithin(t, a, 5*time.Second)
		checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 21.5}, {Quantity: Humidity, Value: 45.6}}, "")
		got, err = readWithin(t, b, 5*time.Second)
		checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: -3.25}, {Quantity: "counter", Value: 100000}, {Quantity: Pressure, Value: 1013}}, "") // in register order
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// One request per read for b: registers 10-14 are contiguous.
	if h.requests[2] != 3 {
		t.Errorf("unit 2 got %d requests for 3 reads, want 3 (one per read)", h.requests[2])
	}
	if len(h.clients) != 1 {
		t.Errorf("the slave saw %d connections (%v), want 1 shared", len(h.clients), h.clients)
	}
}

// A slave that stops answering fails its reads (with the retry), the other
// slave on the bus keeps reading, and the first reads again once it is back.
func TestModbusDeadSlave(t *testing.T) {
	h := newSlaveHandler()
	h.input[1] = map[uint16]uint16{1: 215, 2: 456}
	h.input[3] = map[uint16]uint16{1: 180, 2: 600}
	addr := startTCPSlave(t, h)
	// Sensors on one bus share the longest response_timeout of them.
	live := newModbus(t, &ModbusConfig{URL: "tcp://" + addr, Model: "xy-md02", ResponseTimeout: "100ms"})
	dead := newModbus(t, &ModbusConfig{URL: "tcp://" + addr, UnitID: intp(3), Model: "xy-md02", ResponseTimeout: "200ms"})

	h.set(3, func() { h.dead[3] = true })
	start := time.Now()
	_, err := readWithin(t, dead, 5*time.Second)
	if !errors.Is(err, modbus.ErrRequestTimedOut) || !strings.Contains(err.Error(), "unit 3: reading input registers 1-2 on tcp://"+addr+": no answer within 200ms (2 tries)") {
		t.Fatalf("dead slave: err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the failed read took %v with 2 tries of 200ms", d)
	}
	h.mu.Lock()
	if n := h.requests[3]; n != 2 {
		t.Errorf("dead slave got %d requests, want 2 (one retry)", n)
	}
	h.mu.Unlock()
	got, err := readWithin(t, live, 5*time.Second)
	checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 21.5}, {Quantity: Humidity, Value: 45.6}}, "")

	h.set(3, func() { h.dead[3] = false })
	got, err = readWithin(t, dead, 5*time.Second)
	checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 18}, {Quantity: Humidity, Value: 60}}, "")
}

// A Modbus exception is an answer: reported, not retried, and the
// connection stays.
func TestModbusException(t *testing.T) {
	h := newSlaveHandler()
	h.holding[1] = map[uint16]uint16{0: 1}
	addr := startTCPSlave(t, h)
	src := newModbus(t, &ModbusConfig{URL: "tcp://" + addr, Model: "srth100"}) // wants holding 0 and 1
	_, err := readWithin(t, src, 5*time.Second)
	if !errors.Is(err, modbus.ErrIllegalDataAddress) || !strings.Contains(err.Error(), "unit 1: reading holding registers 0-1") {
		t.Fatalf("err = %v, want illegal data address naming the registers", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.requests[1] != 1 {
		t.Errorf("%d requests, want 1: an exception is not retried", h.requests[1])
	}
}

// Nothing listening: the read fails with the cause, within its timeout.
func TestModbusTCPRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	src := newModbus(t, &ModbusConfig{URL: "tcp://" + addr, Model: "xy-md02", Retries: intp(0)})
	_, err = readWithin(t, src, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "opening tcp://"+addr) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err = %v, want connection refused", err)
	}
}

// Sensors on one port must agree on its settings. One built with other
// settings (a reload that changed them, or a config whose sensors
// disagree) takes the port over: the older sensors' reads fail, saying
// why. A sensor's Close frees the port.
func TestModbusBusSharing(t *testing.T) {
	h := newSlaveHandler()
	h.input[1] = map[uint16]uint16{1: 215, 2: 456}
	addr := startTCPSlave(t, h)
	a := newModbus(t, &ModbusConfig{URL: "tcp://" + addr, Model: "xy-md02"})
	b := newModbus(t, &ModbusConfig{URL: "tcp://" + addr, UnitID: intp(2), Model: "xy-md02"})
	if a.bus != b.bus {
		t.Fatal("two sensors on one endpoint got two buses")
	}
	got, err := readWithin(t, a, 5*time.Second)
	checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 21.5}, {Quantity: Humidity, Value: 45.6}}, "")

	r1 := newModbus(t, &ModbusConfig{URL: "rtu:///dev/ttyTEST9?baud=9600", Model: "xy-md02"})
	r2 := newModbus(t, &ModbusConfig{URL: "rtu:///dev/ttyTEST9?baud=9600", UnitID: intp(2), Model: "xy-md02"})
	if r1.bus != r2.bus {
		t.Fatal("two sensors on one port got two buses")
	}
	r3 := newModbus(t, &ModbusConfig{URL: "rtu:///dev/ttyTEST9?baud=4800", UnitID: intp(3), Model: "xy-md02"})
	if r3.bus == r1.bus {
		t.Fatal("a sensor with other settings got the old bus")
	}
	_, err = readWithin(t, r1, 5*time.Second)
	checkRead(t, nil, err, nil, "/dev/ttyTEST9 is now used at 4800 8N1 by another sensor, not at 9600 8N1")
	_, err = readWithin(t, r3, 5*time.Second)
	checkRead(t, nil, err, nil, "opening /dev/ttyTEST9") // the port is not there, but the bus is r3's
	// r3 goes (a reload that failed after building it): the port is the
	// old sensors' again.
	r3.Close()
	_, err = readWithin(t, r1, 5*time.Second)
	checkRead(t, nil, err, nil, "opening /dev/ttyTEST9")
	r1.Close()
	r2.Close()
	modbusBuses.Lock()
	n := len(modbusBuses.m)
	modbusBuses.Unlock()
	if n != 1 { // the TCP one of a and b
		t.Errorf("%d buses left open after their sensors closed, want 1", n)
	}
}

// The bus runs one transaction at a time, and a read waiting for its turn
// gives up when its ctx ends.
func TestModbusBusTurns(t *testing.T) {
	h := newSlaveHandler()
	h.input[1] = map[uint16]uint16{1: 215, 2: 456}
	h.input[2] = map[uint16]uint16{1: 100, 2: 200}
	addr := startTCPSlave(t, h)
	a := newModbus(t, &ModbusConfig{URL: "tcp://" + addr, Model: "xy-md02"})
	b := newModbus(t, &ModbusConfig{URL: "tcp://" + addr, UnitID: intp(2), Model: "xy-md02"})
	var wg sync.WaitGroup
	var bad atomic.Int32
	for _, src := range []*Modbus{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				got, err := src.Read(ctx)
				cancel()
				if err != nil || len(got) != 2 || (src == a) != (got[0].Value == 21.5) {
					bad.Add(1)
					t.Errorf("read %d: %v, %v", i, got, err)
				}
			}
		}()
	}
	wg.Wait()

	a.bus.turn <- struct{}{} // the bus is busy
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := b.Read(ctx)
	cancel()
	<-a.bus.turn
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "busy with another request") {
		t.Fatalf("read on a busy bus: %v", err)
	}
}

// Modbus answers are outside input: whatever bytes come back for a
// request, the client and the decoding must give readings with finite
// values or an error, never a panic. Each input is one TCP answer from a
// listener on 127.0.0.1, which then closes the connection.
func FuzzModbusAnswer(f *testing.F) {
	// A valid answer to "read input registers 1-2 of unit 1" (transaction
	// 1): 21.5 °C, 45.6 %.
	f.Add([]byte{0, 1, 0, 0, 0, 7, 1, 4, 4, 0, 215, 1, 200})
	f.Add([]byte{0, 1, 0, 0, 0, 3, 1, 0x84, 2})                // exception
	f.Add([]byte{0, 1, 0, 0, 0, 7, 2, 4, 4, 0, 1, 0, 2})       // another unit
	f.Add([]byte{0, 1, 0, 0, 0, 9, 1, 4, 6, 0, 1, 0, 2, 0, 3}) // too many registers
	f.Add([]byte{0, 1, 0, 0, 0xff, 0xff, 1, 4})
	f.Add([]byte{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	answers := make(chan []byte)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b := <-answers
			buf := make([]byte, 260)
			c.SetDeadline(time.Now().Add(2 * time.Second))
			c.Read(buf) // the request
			c.Write(b)
			c.Close()
		}
	}()
	url := "tcp://" + ln.Addr().String()
	f.Fuzz(func(t *testing.T, answer []byte) {
		cfg := &ModbusConfig{URL: url, Retries: intp(0), ResponseTimeout: "2s", Registers: map[string]ModbusRegister{
			Temperature: {Address: intp(1), Table: "input", Scale: floatp(0.1)},
			Humidity:    {Address: intp(2), Table: "input", Format: "uint16", Scale: floatp(0.1)},
		}}
		src, err := cfg.New(Env{Name: "fuzz"})
		if err != nil {
			t.Fatal(err)
		}
		defer src.(*Modbus).Close()
		go func() { answers <- answer }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := src.Read(ctx)
		if err == nil {
			if len(got) != 2 {
				t.Fatalf("%d readings without an error", len(got))
			}
			for _, r := range got {
				if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
					t.Fatalf("%v without an error", r)
				}
			}
		}
	})
}
