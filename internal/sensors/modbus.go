package sensors

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/simonvetter/modbus"
)

// The modbus source reads registers of a Modbus RTU slave on an RS-485 line
// (through a USB or on-board serial port) or of a Modbus TCP server. Sensors
// that name one serial port share it, one transaction at a time; sensors
// that name one TCP endpoint share its connection (modbus_bus.go). The
// protocol itself (framing, CRC, unit id, byte count and transaction id
// checks) is github.com/simonvetter/modbus's.

func init() { Register("modbus", func() Config { return &ModbusConfig{} }) }

// ModbusConfig is the modbus source's own keys.
type ModbusConfig struct {
	// URL is rtu:///dev/ttyUSB0?baud=9600&parity=N&stop=1&data=8 or
	// tcp://host[:502].
	URL string `yaml:"url"`
	// UnitID is the slave address: 1-247 on a serial line, 0-255 over TCP
	// (where gateways route by it). Default 1.
	UnitID *int `yaml:"unit_id"`
	// Model names a preset register map (modbusModels); Registers adds to
	// it or overrides its entries.
	Model string `yaml:"model"`
	// Registers maps a quantity to the register that holds it.
	Registers map[string]ModbusRegister `yaml:"registers"`
	// ResponseTimeout is how long one request waits for its answer
	// (default 1s), a Go duration.
	ResponseTimeout string `yaml:"response_timeout"`
	// Retries is how many times a request that got no valid answer is sent
	// again within one read (default 1).
	Retries *int `yaml:"retries"`
}

// ModbusRegister says where a quantity is and how to decode it.
type ModbusRegister struct {
	// Address is the register's address on the wire, 0-65535 (the one a
	// manual prints as 0x0001; in 3xxxx/4xxxx notation, subtract
	// 30001/40001).
	Address *int `yaml:"address"`
	// Table is holding (function 03, the default) or input (function 04).
	Table string `yaml:"table"`
	// Format is int16 (default), uint16, int32, uint32 or float32; the
	// 32-bit ones take two registers.
	Format string `yaml:"format"`
	// WordOrder of a 32-bit value: big (high word first, the default) or
	// little.
	WordOrder string `yaml:"word_order"`
	// Scale multiplies the raw value (0.1 for tenths); default 1.
	Scale *float64 `yaml:"scale"`
}

// Defaults of the modbus keys.
const (
	modbusDefaultUnit    = 1
	modbusDefaultTimeout = time.Second
	modbusDefaultRetries = 1
	modbusDefaultBaud    = 9600
	modbusMaxRetries     = 5
	modbusMaxTimeout     = 30 * time.Second
	// modbusMaxBlock is the most registers one read request may ask for
	// (the protocol's limit, 125).
	modbusMaxBlock = 125
)

// modbusBaudRates are the rates a serial port can be set to.
var modbusBaudRates = []int{1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400}

// modbusEndpoint is a parsed url: where the bus is and how to talk on it.
type modbusEndpoint struct {
	rtu    bool
	device string // rtu: the serial device; tcp: host:port
	baud   int
	parity string // N, E or O
	stop   int
	data   int
}

// key identifies the bus that sensors share.
func (e modbusEndpoint) key() string {
	if e.rtu {
		return "rtu:" + e.device
	}
	return "tcp:" + e.device
}

// settings describes the serial settings, for messages.
func (e modbusEndpoint) settings() string {
	return fmt.Sprintf("%d %d%s%d", e.baud, e.data, e.parity, e.stop)
}

// parseModbusURL parses the url key.
func parseModbusURL(raw string) (modbusEndpoint, error) {
	var e modbusEndpoint
	u, err := url.Parse(raw)
	if err != nil {
		return e, fmt.Errorf("%q is not a URL: rtu:///dev/ttyUSB0?baud=9600 or tcp://host:502", raw)
	}
	switch u.Scheme {
	case "rtu":
		if u.Host != "" || !filepath.IsAbs(u.Path) || filepath.Clean(u.Path) != u.Path {
			return e, fmt.Errorf("%q: an RTU URL names a serial device by its absolute path: rtu:///dev/ttyUSB0 (three slashes)", raw)
		}
		e = modbusEndpoint{rtu: true, device: u.Path, baud: modbusDefaultBaud, parity: "N", stop: 1, data: 8}
		q := u.Query()
		for k := range q {
			if !slices.Contains([]string{"baud", "parity", "stop", "data"}, k) {
				return e, fmt.Errorf("%q: unknown parameter %q (known: baud, parity, stop, data)", raw, k)
			}
			if len(q[k]) > 1 {
				return e, fmt.Errorf("%q: %s given twice", raw, k)
			}
		}
		if v := q.Get("baud"); v != "" {
			if e.baud, err = strconv.Atoi(v); err != nil || !slices.Contains(modbusBaudRates, e.baud) {
				return e, fmt.Errorf("%q: baud %q is not one of %v", raw, v, modbusBaudRates)
			}
		}
		if v := q.Get("parity"); v != "" {
			if e.parity = strings.ToUpper(v); e.parity != "N" && e.parity != "E" && e.parity != "O" {
				return e, fmt.Errorf("%q: parity %q is not N (none), E (even) or O (odd)", raw, v)
			}
		}
		if v := q.Get("stop"); v != "" {
			if e.stop, err = strconv.Atoi(v); err != nil || e.stop != 1 && e.stop != 2 {
				return e, fmt.Errorf("%q: stop %q is not 1 or 2", raw, v)
			}
		}
		if v := q.Get("data"); v != "" {
			if e.data, err = strconv.Atoi(v); err != nil || e.data != 7 && e.data != 8 {
				return e, fmt.Errorf("%q: data %q is not 7 or 8", raw, v)
			}
		}
	case "tcp":
		if u.Host == "" || u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return e, fmt.Errorf("%q: a TCP URL is tcp://host or tcp://host:port, nothing more", raw)
		}
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = "502"
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return e, fmt.Errorf("%q: port %q is not 1-65535", raw, port)
		}
		e = modbusEndpoint{device: net.JoinHostPort(host, port)}
	default:
		return e, fmt.Errorf("%q: the scheme is rtu (serial, RS-485) or tcp, e.g. rtu:///dev/ttyUSB0?baud=9600 or tcp://10.0.0.5:502", raw)
	}
	return e, nil
}

// modbusField is one quantity's register, checked and with defaults.
type modbusField struct {
	quantity string
	table    modbus.RegType
	addr     uint16
	words    uint16 // 1 or 2
	format   string
	little   bool // word order of 32-bit values
	scale    float64
}

// fields merges the model's preset with the configured registers and
// checks every entry. Errors are *KeyErrors.
func (c *ModbusConfig) fields() ([]modbusField, []error) {
	regs := map[string]ModbusRegister{}
	var errs []error
	if c.Model != "" {
		m, ok := modbusModels[strings.ToLower(c.Model)]
		if !ok {
			errs = append(errs, Errorf("model", "unknown model %q (known: %s); or give the registers", c.Model, strings.Join(slices.Sorted(maps.Keys(modbusModels)), ", ")))
		}
		maps.Copy(regs, m.registers)
	}
	maps.Copy(regs, c.Registers)
	if len(regs) == 0 && len(errs) == 0 {
		errs = append(errs, Errorf("registers", "are required (or a model: %s): per quantity, e.g. temperature: {address: 1, table: input, format: int16, scale: 0.1}", strings.Join(slices.Sorted(maps.Keys(modbusModels)), ", ")))
	}
	var out []modbusField
	for _, q := range slices.Sorted(maps.Keys(regs)) {
		r := regs[q]
		key := "registers." + q
		f := modbusField{quantity: q, words: 1, format: "int16", scale: 1}
		if !ValidQuantity(q) {
			errs = append(errs, Errorf(key, "%s is not a quantity name (a-z, 0-9, _; starting with a letter)", quoteShort(q)))
			continue
		}
		switch r.Format {
		case "", "int16":
		case "uint16":
			f.format = r.Format
		case "int32", "uint32", "float32":
			f.format, f.words = r.Format, 2
		default:
			errs = append(errs, Errorf(key+".format", "%q is not int16, uint16, int32, uint32 or float32", r.Format))
		}
		switch r.Table {
		case "", "holding":
			f.table = modbus.HOLDING_REGISTER
		case "input":
			f.table = modbus.INPUT_REGISTER
		default:
			errs = append(errs, Errorf(key+".table", "%q is not holding (function 03) or input (function 04)", r.Table))
		}
		switch r.WordOrder {
		case "", "big":
		case "little":
			f.little = true
		default:
			errs = append(errs, Errorf(key+".word_order", "%q is not big (high word first) or little", r.WordOrder))
		}
		switch {
		case r.Address == nil:
			errs = append(errs, Errorf(key+".address", "is required: the register's address, 0-65535"))
		case *r.Address < 0 || *r.Address+int(f.words)-1 > 0xffff:
			errs = append(errs, Errorf(key+".address", "%d is outside 0-65535", *r.Address))
		default:
			f.addr = uint16(*r.Address)
		}
		if r.Scale != nil {
			if f.scale = *r.Scale; f.scale == 0 || math.IsNaN(f.scale) || math.IsInf(f.scale, 0) {
				errs = append(errs, Errorf(key+".scale", "must be a finite number other than 0"))
			}
		}
		out = append(out, f)
	}
	return out, errs
}

// Validate implements Config. It does not open the port or connect: the
// box that checks a config need not be the one with the bus.
func (c *ModbusConfig) Validate() error {
	var errs []error
	ep, err := parseModbusURL(c.URL)
	if c.URL == "" {
		errs = append(errs, Errorf("url", "is required: rtu:///dev/ttyUSB0?baud=9600&parity=N&stop=1 or tcp://host:502"))
	} else if err != nil {
		errs = append(errs, Errorf("url", "%v", err))
	}
	if c.UnitID != nil {
		switch u := *c.UnitID; {
		case err == nil && ep.rtu && (u < 1 || u > 247):
			errs = append(errs, Errorf("unit_id", "%d: a slave on a serial line has an address of 1-247", u))
		case u < 0 || u > 255:
			errs = append(errs, Errorf("unit_id", "%d is outside 0-255", u))
		}
	}
	if _, err := c.timeout(); err != nil {
		errs = append(errs, err)
	}
	if c.Retries != nil && (*c.Retries < 0 || *c.Retries > modbusMaxRetries) {
		errs = append(errs, Errorf("retries", "%d is outside 0-%d", *c.Retries, modbusMaxRetries))
	}
	_, ferrs := c.fields()
	errs = append(errs, ferrs...)
	return errors.Join(errs...)
}

func (c *ModbusConfig) timeout() (time.Duration, error) {
	if c.ResponseTimeout == "" {
		return modbusDefaultTimeout, nil
	}
	d, err := time.ParseDuration(c.ResponseTimeout)
	if err != nil || d < 10*time.Millisecond || d > modbusMaxTimeout {
		return 0, Errorf("response_timeout", "%q is not a duration of 10ms to %s, such as 500ms", c.ResponseTimeout, modbusMaxTimeout)
	}
	return d, nil
}

// New implements Config. Sensors on one bus share it: the port is opened,
// or the connection made, at the first read.
func (c *ModbusConfig) New(env Env) (Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ep, _ := parseModbusURL(c.URL)
	timeout, _ := c.timeout()
	fields, _ := c.fields()
	bus, err := acquireModbusBus(ep, timeout)
	if err != nil {
		return nil, err
	}
	s := &Modbus{bus: bus, unit: modbusDefaultUnit, retries: modbusDefaultRetries, blocks: modbusBlocks(fields)}
	if c.UnitID != nil {
		s.unit = uint8(*c.UnitID)
	}
	if c.Retries != nil {
		s.retries = *c.Retries
	}
	return s, nil
}

// modbusBlock is one read request: contiguous registers of one table, and
// the fields in them.
type modbusBlock struct {
	table  modbus.RegType
	addr   uint16
	count  uint16
	fields []modbusField
}

// modbusBlocks groups fields into as few requests as possible: registers of
// one table that are contiguous or overlap go in one request of at most 125
// registers. Registers with a gap between them are read separately, since a
// device may answer an address in the gap with an exception.
func modbusBlocks(fields []modbusField) []modbusBlock {
	sorted := slices.Clone(fields)
	slices.SortStableFunc(sorted, func(a, b modbusField) int {
		if a.table != b.table {
			return int(a.table) - int(b.table)
		}
		return int(a.addr) - int(b.addr)
	})
	var blocks []modbusBlock
	for _, f := range sorted {
		end := uint32(f.addr) + uint32(f.words) // one past the last register
		if n := len(blocks); n > 0 {
			b := &blocks[n-1]
			bEnd := uint32(b.addr) + uint32(b.count)
			if b.table == f.table && uint32(f.addr) <= bEnd && end-uint32(b.addr) <= modbusMaxBlock {
				b.count = uint16(max(bEnd, end) - uint32(b.addr))
				b.fields = append(b.fields, f)
				continue
			}
		}
		blocks = append(blocks, modbusBlock{table: f.table, addr: f.addr, count: f.words, fields: []modbusField{f}})
	}
	return blocks
}

// Modbus reads the registers of one slave.
type Modbus struct {
	bus     *modbusBus
	unit    uint8
	retries int
	blocks  []modbusBlock
	out     []Reading
}

// Close implements io.Closer: the sensor no longer uses its bus, which is
// closed when no sensor uses it.
func (s *Modbus) Close() error {
	if s.bus == nil {
		return nil
	}
	b := s.bus
	s.bus = nil
	return b.release()
}

// Read implements Source. Each block is one request; one that gets no valid
// answer is sent again up to retries times, while ctx allows. A Modbus
// exception (the slave answered "illegal data address") is not retried,
// but for "busy" and a gateway's "target failed to respond".
func (s *Modbus) Read(ctx context.Context) ([]Reading, error) {
	s.out = s.out[:0]
	for i := range s.blocks {
		b := &s.blocks[i]
		words, err := s.readBlock(ctx, b)
		if err != nil {
			return nil, err
		}
		for _, f := range b.fields {
			off := f.addr - b.addr
			v, err := decodeModbus(words[off:off+f.words], f.format, f.little)
			if err != nil {
				return nil, fmt.Errorf("%s: %s register %d: %w", f.quantity, tableName(f.table), f.addr, err)
			}
			// Six decimals keep float noise (-10.100000000000001) out
			// without losing what a register can hold.
			s.out = append(s.out, Reading{Quantity: f.quantity, Value: math.Round(v*f.scale*1e6) / 1e6})
		}
	}
	return s.out, nil
}

func (s *Modbus) readBlock(ctx context.Context, b *modbusBlock) ([]uint16, error) {
	var words []uint16
	var err error
	for attempt := 0; ; attempt++ {
		err = s.bus.do(ctx, s.unit, func(c *modbus.ModbusClient) error {
			var rerr error
			words, rerr = c.ReadRegisters(b.addr, b.count, b.table)
			return rerr
		})
		if err == nil {
			if len(words) != int(b.count) { // the library checks this; a second look costs nothing
				err = fmt.Errorf("%d registers in the answer, %d asked for", len(words), b.count)
			} else {
				return words, nil
			}
		}
		if ctx.Err() != nil || attempt >= s.retries || !modbusRetryable(err) || !sleepCtx(ctx, modbusRetryPause) {
			break
		}
	}
	what := fmt.Sprintf("unit %d: reading %s registers %d-%d on %s", s.unit, tableName(b.table), b.addr, int(b.addr)+int(b.count)-1, s.bus.name)
	if errors.Is(err, modbus.ErrRequestTimedOut) {
		tries := "1 try"
		if s.retries > 0 {
			tries = strconv.Itoa(s.retries+1) + " tries"
		}
		return nil, fmt.Errorf("%s: no answer within %s (%s): %w", what, s.bus.timeout, tries, err)
	}
	return nil, fmt.Errorf("%s: %w", what, err)
}

// modbusRetryPause lets a line settle, and other sensors on it take a turn,
// before a request is sent again.
const modbusRetryPause = 50 * time.Millisecond

// modbusRetryable reports whether another try may get a valid answer.
func modbusRetryable(err error) bool {
	switch {
	case errors.Is(err, modbus.ErrIllegalFunction), errors.Is(err, modbus.ErrIllegalDataAddress),
		errors.Is(err, modbus.ErrIllegalDataValue), errors.Is(err, modbus.ErrServerDeviceFailure),
		errors.Is(err, modbus.ErrMemoryParityError), errors.Is(err, modbus.ErrGWPathUnavailable),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	return true
}

func tableName(t modbus.RegType) string {
	if t == modbus.INPUT_REGISTER {
		return "input"
	}
	return "holding"
}

// errModbusNotFinite is what a float32 register that holds NaN or an
// infinity yields: transmitters send NaN for "no measurement".
var errModbusNotFinite = errors.New("holds no finite number (NaN or infinity: the transmitter has no measurement)")

// decodeModbus decodes one value from its registers. Register contents are
// outside input, from a slave or anything that answers in its place: any
// words must give a finite number or an error, never a panic.
func decodeModbus(words []uint16, format string, little bool) (float64, error) {
	need := 1
	if format == "int32" || format == "uint32" || format == "float32" {
		need = 2
	}
	if len(words) != need {
		return 0, fmt.Errorf("%s needs %d registers, got %d", format, need, len(words))
	}
	var u32 uint32
	if need == 2 {
		hi, lo := words[0], words[1]
		if little {
			hi, lo = lo, hi
		}
		u32 = uint32(hi)<<16 | uint32(lo)
	}
	switch format {
	case "int16":
		return float64(int16(words[0])), nil
	case "uint16":
		return float64(words[0]), nil
	case "int32":
		return float64(int32(u32)), nil
	case "uint32":
		return float64(u32), nil
	case "float32":
		v := float64(math.Float32frombits(u32))
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, errModbusNotFinite
		}
		return v, nil
	}
	return 0, fmt.Errorf("unknown format %q", format)
}
