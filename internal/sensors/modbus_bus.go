package sensors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simonvetter/modbus"
)

// A Modbus bus (one serial port, or one TCP endpoint) is shared by every
// sensor that names it: a serial line carries one transaction at a time,
// and a Modbus TCP server (often a gateway to such a line) is best asked
// over one connection. The registry below hands each sensor its bus by
// endpoint; the bus runs one transaction at a time, opens the port or
// connection when it is first needed, and opens it again after an error.

var modbusBuses = struct {
	sync.Mutex
	m map[string]*modbusBus
}{m: map[string]*modbusBus{}}

// modbusBus is one shared port or connection.
type modbusBus struct {
	name    string // /dev/ttyUSB0 or tcp://host:502, for messages
	ep      modbusEndpoint
	timeout time.Duration // per request; the longest any of its sensors asked for
	refs    int           // sensors using it, under modbusBuses' lock

	turn   chan struct{}        // holds a token while a transaction runs
	client *modbus.ModbusClient // nil while closed; only touched holding turn

	// retired is set, to the settings of its successor, when a sensor with
	// other settings for the port took it over; predecessor is the bus this
	// one took over (under modbusBuses' lock).
	retired     atomic.Pointer[modbusEndpoint]
	predecessor *modbusBus
}

// acquireModbusBus returns the bus of ep, creating it for the first sensor.
// Sensors on one serial port must agree on its settings. A sensor built
// with other settings than the port's bus has (a reload that changed the
// baud rate: the old sensors are still there while the new ones are built)
// gets a new bus, and the old one is retired: its sensors' reads fail,
// saying why, and it closes the port. So a reload applies new settings, and
// two sensors of one config that disagree are told so at their reads.
func acquireModbusBus(ep modbusEndpoint, timeout time.Duration) (*modbusBus, error) {
	modbusBuses.Lock()
	defer modbusBuses.Unlock()
	if b, ok := modbusBuses.m[ep.key()]; ok {
		if b.ep == ep {
			b.refs++
			b.timeout = max(b.timeout, timeout)
			return b, nil
		}
		old := b
		old.retired.Store(&ep)
		go old.closeWhenIdle()
		b = newModbusBus(ep, timeout)
		b.predecessor = old
		modbusBuses.m[ep.key()] = b
		return b, nil
	}
	b := newModbusBus(ep, timeout)
	modbusBuses.m[ep.key()] = b
	return b, nil
}

func newModbusBus(ep modbusEndpoint, timeout time.Duration) *modbusBus {
	name := ep.device
	if !ep.rtu {
		name = "tcp://" + ep.device
	}
	return &modbusBus{name: name, ep: ep, timeout: timeout, refs: 1, turn: make(chan struct{}, 1)}
}

// release drops one sensor's use of the bus and closes it after the last.
// (The core does not call Close of pulled sources yet; buses of sensors
// removed by a reload then stay open until the port is reconfigured.)
func (b *modbusBus) release() error {
	modbusBuses.Lock()
	b.refs--
	last := b.refs == 0
	if last && modbusBuses.m[b.ep.key()] == b {
		delete(modbusBuses.m, b.ep.key())
		// The sensors that took the port over are gone while those they
		// took it from are not (a reload that failed after building them):
		// the port is theirs again.
		if p := b.predecessor; p != nil && p.refs > 0 {
			p.retired.Store(nil)
			modbusBuses.m[p.ep.key()] = p
		}
	}
	b.predecessor = nil
	modbusBuses.Unlock()
	if !last {
		return nil
	}
	return b.closeWhenIdle()
}

// closeWhenIdle closes the port or connection once no transaction runs (a
// transaction is bounded by its timeout).
func (b *modbusBus) closeWhenIdle() error {
	b.turn <- struct{}{}
	defer func() { <-b.turn }()
	return b.closeClient()
}

// discardLog swallows the library's own log lines (it would write them to
// stdout, where -once prints readings); its errors come back to the caller.
var discardLog = log.New(io.Discard, "", 0)

// do runs one transaction with unit, waiting for its turn on the bus. It
// returns when ctx ends even if the transaction is still running (the
// library has no cancellation); the bus is then busy until the request
// times out, which response_timeout bounds.
func (b *modbusBus) do(ctx context.Context, unit uint8, fn func(*modbus.ModbusClient) error) error {
	select {
	case b.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s, busy with another request: %w", b.name, ctx.Err())
	}
	if now := b.retired.Load(); now != nil {
		<-b.turn
		return fmt.Errorf("%s is now used at %s by another sensor, not at %s: sensors on one port share its settings", b.ep.device, now.settings(), b.ep.settings())
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-b.turn }()
		done <- b.transact(unit, fn)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done:
			return err
		default:
		}
		return ctx.Err()
	}
}

// transact runs fn on the open client, opening it first if needed. After
// anything but a Modbus exception (a valid answer saying no), the port or
// connection is closed, so that the next request starts clean: a late
// answer to a timed-out request must not be taken for the next one's, and
// a TCP stream out of step is beyond repair.
func (b *modbusBus) transact(unit uint8, fn func(*modbus.ModbusClient) error) error {
	if b.client == nil {
		c, err := b.open()
		if err != nil {
			return err
		}
		b.client = c
	}
	if err := b.client.SetUnitId(unit); err != nil {
		return err
	}
	err := fn(b.client)
	if err != nil && !modbusException(err) {
		b.closeClient()
	}
	return err
}

func (b *modbusBus) open() (*modbus.ModbusClient, error) {
	conf := &modbus.ClientConfiguration{Timeout: b.timeout, Logger: discardLog}
	if b.ep.rtu {
		conf.URL = "rtu://" + b.ep.device
		conf.Speed = uint(b.ep.baud)
		conf.DataBits = uint(b.ep.data)
		conf.StopBits = uint(b.ep.stop)
		conf.Parity = map[string]uint{"N": modbus.PARITY_NONE, "E": modbus.PARITY_EVEN, "O": modbus.PARITY_ODD}[b.ep.parity]
	} else {
		conf.URL = "tcp://" + b.ep.device
	}
	c, err := modbus.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.name, err)
	}
	if err := c.Open(); err != nil {
		return nil, fmt.Errorf("opening %s: %w", b.name, err)
	}
	return c, nil
}

func (b *modbusBus) closeClient() error {
	if b.client == nil {
		return nil
	}
	err := b.client.Close()
	b.client = nil
	return err
}

// modbusException reports whether err is a slave's exception answer, after
// which the line or connection is in step.
func modbusException(err error) bool {
	for _, e := range []error{modbus.ErrIllegalFunction, modbus.ErrIllegalDataAddress, modbus.ErrIllegalDataValue,
		modbus.ErrServerDeviceFailure, modbus.ErrAcknowledge, modbus.ErrServerDeviceBusy, modbus.ErrMemoryParityError,
		modbus.ErrGWPathUnavailable, modbus.ErrGWTargetFailedToRespond} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
