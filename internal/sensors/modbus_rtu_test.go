//go:build linux

package sensors

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

// requireTool finds a program the RTU test needs. CI sets
// GATEWAYD_REQUIRE_MODBUS=1 so that a missing one fails there instead of
// skipping.
func requireTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil && len(args) > 0 {
		err = exec.Command(path, args...).Run()
	}
	if err != nil {
		if os.Getenv("GATEWAYD_REQUIRE_MODBUS") != "" {
			t.Fatalf("%s %v: %v (install socat, python3-pymodbus and python3-serial-asyncio)", name, args, err)
		}
		t.Skipf("%s %v: %v (install socat, python3-pymodbus and python3-serial-asyncio)", name, args, err)
	}
	return path
}

// startProcess starts a helper that the test ends by its pid.
func startProcess(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

// rtuLine starts a pseudo-terminal pair (socat) with pymodbus serving units
// on one end, as transmitters on an RS-485 line, and returns the other end.
func rtuLine(t *testing.T, units string) string {
	t.Helper()
	socat := requireTool(t, "socat", "-V")
	python := requireTool(t, "/usr/bin/python3", "-c", "import pymodbus.server, serial_asyncio")
	dir := t.TempDir()
	master, slave := filepath.Join(dir, "ttyGW"), filepath.Join(dir, "ttySLAVE")
	startProcess(t, exec.Command(socat, "pty,raw,echo=0,link="+master, "pty,raw,echo=0,link="+slave))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err1 := os.Stat(master)
		_, err2 := os.Stat(slave)
		if err1 == nil && err2 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("socat made no pseudo-terminals")
		}
		time.Sleep(10 * time.Millisecond)
	}
	script, err := filepath.Abs("testdata/modbus/slave.py")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, script, slave, "9600", units)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	startProcess(t, cmd)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() { // read to the end, so that the slave never blocks on stderr
			if strings.HasPrefix(sc.Text(), "serving") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("slave.py did not start")
	}
	return master
}

// Two transmitters on one RS-485 line (units 1 and 2, pymodbus over a
// pseudo-terminal), read by two sensors at once through the one port: every
// read right. Unit 3 is not on the line: its reads fail after the retry,
// and the others keep reading.
func TestModbusRTU(t *testing.T) {
	line := rtuLine(t, `{"1": {"ir": {"1": 215, "2": 456}}, "2": {"hr": {"0": 655, "1": 65435}}}`)
	url := "rtu://" + line + "?baud=9600&parity=N&stop=1"
	md02 := newModbus(t, &ModbusConfig{URL: url, UnitID: intp(1), Model: "xy-md02", ResponseTimeout: "500ms"})
	renke := newModbus(t, &ModbusConfig{URL: url, UnitID: intp(2), Model: "rs-ws-n01"})
	absent := newModbus(t, &ModbusConfig{URL: url, UnitID: intp(3), Model: "xy-md02"})

	// The slave may take a moment to open its end.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := readWithin(t, md02, 5*time.Second); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("unit 1 never answered: %v", err)
		}
	}

	const reads = 50
	var wg sync.WaitGroup
	results := make([]int, 2)
	for i, c := range []struct {
		src  *Modbus
		want []Reading
	}{
		{md02, []Reading{{Quantity: Temperature, Value: 21.5}, {Quantity: Humidity, Value: 45.6}}},
		{renke, []Reading{{Quantity: Humidity, Value: 65.5}, {Quantity: Temperature, Value: -10.1}}},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < reads; n++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				got, err := c.src.Read(ctx)
				cancel()
				if err == nil && len(got) == len(c.want) && got[0] == c.want[0] && got[1] == c.want[1] {
					results[i]++
				} else {
					t.Errorf("unit %d, read %d: %v, %v", c.src.unit, n, got, err)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("right reads: unit 1 %d of %d, unit 2 %d of %d", results[0], reads, results[1], reads)

	_, err := readWithin(t, absent, 10*time.Second)
	if !errors.Is(err, modbus.ErrRequestTimedOut) || !strings.Contains(err.Error(), "unit 3: reading input registers 1-2 on "+line) {
		t.Fatalf("absent unit: %v", err)
	}
	got, err := readWithin(t, md02, 5*time.Second)
	checkRead(t, got, err, []Reading{{Quantity: Temperature, Value: 21.5}, {Quantity: Humidity, Value: 45.6}}, "")
}
