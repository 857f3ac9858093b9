package app_test

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simonvetter/modbus"

	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// tcpSlave is a Modbus TCP server (the modbus library's own) holding input
// registers 1 and 2 (an XY-MD02's temperature and humidity) for units 1 and
// 2; a unit marked dead does not answer.
type tcpSlave struct {
	mu   sync.Mutex
	dead map[uint8]bool
	quit chan struct{}
}

func (s *tcpSlave) HandleCoils(*modbus.CoilsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}
func (s *tcpSlave) HandleDiscreteInputs(*modbus.DiscreteInputsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalFunction
}
func (s *tcpSlave) HandleHoldingRegisters(*modbus.HoldingRegistersRequest) ([]uint16, error) {
	return nil, modbus.ErrIllegalFunction
}
func (s *tcpSlave) HandleInputRegisters(r *modbus.InputRegistersRequest) ([]uint16, error) {
	s.mu.Lock()
	dead := s.dead[r.UnitId]
	s.mu.Unlock()
	if dead {
		select {
		case <-s.quit:
		case <-time.After(time.Second):
		}
		return nil, modbus.ErrServerDeviceBusy
	}
	if r.Addr != 1 || r.Quantity != 2 {
		return nil, modbus.ErrIllegalDataAddress
	}
	return []uint16{200 + uint16(r.UnitId), 500}, nil // 20.1 °C / 20.2 °C, 50 %
}

func (s *tcpSlave) setDead(unit uint8, dead bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead[unit] = dead
}

// A Modbus slave that stops answering, in the running daemon: its read
// errors are counted, gatewayd_sensor_up turns 0, nothing of it is
// published while it is silent (no stale value sent again), the other
// slave on the same connection is unaffected, and the recovery is logged
// when it answers again.
func TestModbusSlaveSilentAndBack(t *testing.T) {
	slave := &tcpSlave{dead: map[uint8]bool{}, quit: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{URL: "tcp://" + addr, Timeout: time.Minute, MaxClients: 10}, slave)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(slave.quit); srv.Stop() })

	b := testbroker.Start(t, testbroker.Options{})
	sub := subscribe(t, b.URL(), "modbus-sub", "gatewayd/gw/+/+")
	d := startDaemon(t, baseYAML(b.URL())+fmt.Sprintf(`sensors:
  - {name: one, type: modbus, url: "tcp://%s", unit_id: 1, model: xy-md02, response_timeout: 100ms, retries: 0, interval: 200ms, timeout: 2s}
  - {name: two, type: modbus, url: "tcp://%s", unit_id: 2, model: xy-md02, response_timeout: 100ms, retries: 0, interval: 200ms, timeout: 2s}
`, addr, addr))

	count := func(sensor string) int {
		n := 0
		for _, m := range sub.messages() {
			if m.Topic == "gatewayd/gw/"+sensor+"/temperature" {
				n++
			}
		}
		return n
	}
	metric := func(name, sensor string) float64 {
		_, body := scrape(t, d, "/metrics")
		m := regexp.MustCompile(`(?m)^` + name + `\{sensor="` + sensor + `"\} (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	testbroker.Eventually(t, 10*time.Second, "both sensors published", func() bool { return count("one") > 0 && count("two") > 0 })
	if v := metric("gatewayd_sensor_up", "two"); v != 1 {
		t.Fatalf("sensor_up of two = %v while it answers", v)
	}

	slave.setDead(2, true)
	testbroker.Eventually(t, 10*time.Second, "two is down with 2 errors", func() bool {
		return metric("gatewayd_sensor_up", "two") == 0 && metric("gatewayd_sensor_read_errors_total", "two") >= 2
	})
	silentFrom, oneFrom := count("two"), count("one")
	errs := metric("gatewayd_sensor_read_errors_total", "two")
	testbroker.Eventually(t, 10*time.Second, "three more failed reads", func() bool {
		return metric("gatewayd_sensor_read_errors_total", "two") >= errs+3
	})
	if n := count("two"); n != silentFrom {
		t.Errorf("%d readings of the silent slave were published", n-silentFrom)
	}
	testbroker.Eventually(t, 10*time.Second, "one keeps publishing", func() bool { return count("one") > oneFrom+2 })
	if v := metric("gatewayd_sensor_up", "one"); v != 1 {
		t.Errorf("sensor_up of one = %v while two is silent", v)
	}
	if !strings.Contains(d.logs.String(), `"sensor":"two","err":"unit 2: reading input registers 1-2 on tcp://`+addr+`: no answer within 100ms (1 try): request timed out"`) {
		t.Errorf("the failure was not logged with its cause:\n%s", d.logs.String())
	}

	slave.setDead(2, false)
	testbroker.Eventually(t, 10*time.Second, "two publishes again", func() bool { return count("two") > silentFrom })
	testbroker.Eventually(t, 10*time.Second, "the recovery is logged", func() bool {
		return regexp.MustCompile(`"msg":"sensor reads again".*"sensor":"two"`).MatchString(d.logs.String())
	})
	if v := metric("gatewayd_sensor_up", "two"); v != 1 {
		t.Errorf("sensor_up of two = %v after it answered again", v)
	}
}
