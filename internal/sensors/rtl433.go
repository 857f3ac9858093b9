package sensors

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
)

// The rtl433 source publishes what a 433/868 MHz radio sensor transmits
// (weather stations, pool and fridge thermometers), received by an RTL-SDR
// stick and decoded by rtl_433 (https://github.com/merbanan/rtl_433). It is
// a push source: it publishes when the sensor transmits, not on an
// interval. One rtl_433 child runs per distinct command, shared by every
// rtl433 sensor that names it (rtl433_receiver.go); each sensor takes the
// messages of its model, id and channel.

func init() { Register("rtl433", func() Config { return &RTL433Config{} }) }

// rtlDefaultCommand is rtl_433 with JSON output, one line per transmission.
var rtlDefaultCommand = []string{"rtl_433", "-F", "json"}

// RTL433Config is the rtl433 source's own keys.
type RTL433Config struct {
	// Model is rtl_433's "model" of the device: Acurite-Tower, Nexus-TH.
	Model string `yaml:"model"`
	// ID is rtl_433's "id", a number (or a string for some devices). Empty
	// takes every device of the model: only right when there is one in
	// range. Many devices choose a new id when their battery is changed.
	ID string `yaml:"id"`
	// Channel is rtl_433's "channel", a number or a letter (A, B, C); empty
	// takes every channel.
	Channel string `yaml:"channel"`
	// Command runs rtl_433; default ["rtl_433", "-F", "json"]. Sensors with
	// the same command share one child.
	Command []string `yaml:"command"`
}

// Pushes implements PushConfig.
func (c *RTL433Config) Pushes() {}

func (c *RTL433Config) command() []string {
	if len(c.Command) == 0 {
		return rtlDefaultCommand
	}
	return c.Command
}

// Validate implements Config.
func (c *RTL433Config) Validate() error {
	var errs []error
	printable := func(s string) bool {
		return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
	}
	switch {
	case strings.TrimSpace(c.Model) == "":
		errs = append(errs, Errorf("model", `is required: rtl_433's "model" of the device, e.g. Acurite-Tower (run rtl_433 -F json and look at what it prints)`))
	case !printable(c.Model) || len(c.Model) > 64:
		errs = append(errs, Errorf("model", "%s is not a model name", quoteShort(c.Model)))
	}
	if !printable(c.ID) || len(c.ID) > 64 {
		errs = append(errs, Errorf("id", "%s is not an id", quoteShort(c.ID)))
	}
	if !printable(c.Channel) || len(c.Channel) > 16 {
		errs = append(errs, Errorf("channel", "%s is not a channel", quoteShort(c.Channel)))
	}
	if c.Command != nil {
		switch {
		case len(c.Command) == 0 || c.Command[0] == "":
			errs = append(errs, Errorf("command", `must name a program: ["rtl_433", "-F", "json"] (the default)`))
		case strings.ContainsRune(c.Command[0], '/') && !filepath.IsAbs(c.Command[0]):
			errs = append(errs, Errorf("command", "%q is a relative path: give an absolute path or a program name found in PATH", c.Command[0]))
		}
		for i, a := range c.Command {
			if strings.IndexByte(a, 0) >= 0 {
				errs = append(errs, Errorf("command", "argument %d contains a NUL byte", i))
			}
		}
	}
	return errors.Join(errs...)
}

// Probe implements Prober: rtl_433 must be installed.
func (c *RTL433Config) Probe() error {
	prog := c.command()[0]
	if filepath.IsAbs(prog) {
		return nil // may be installed later; a missing file fails the start
	}
	if _, err := exec.LookPath(prog); err != nil {
		return Errorf("command", "%q not found in PATH (apt-get install rtl-433)", prog)
	}
	return nil
}

// New implements Config. The child is started by the first sensor's Run.
func (c *RTL433Config) New(env Env) (Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cmd := append([]string(nil), c.command()...)
	return &RTL433{
		model:     c.Model,
		id:        keyOrEmpty(c.ID),
		channel:   keyOrEmpty(c.Channel),
		command:   cmd,
		receivers: env.Receivers,
		log:       env.Log,
	}, nil
}

func keyOrEmpty(s string) string {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	return rtlKeyString(s)
}

// RTL433 is one rtl433 sensor: a Pusher that takes, from the rtl_433 child
// it shares, the transmissions of its device.
type RTL433 struct {
	PushOnly
	model, id, channel string // id and channel normalised, "" for any
	command            []string
	receivers          *Receivers
	log                *slog.Logger
	out                []Reading
}

// receiverKey names the shared child of a command in the registry (and in
// its log lines); quoting keeps ["a b"] and ["a", "b"] apart.
func (s *RTL433) receiverKey() string {
	q := make([]string, len(s.command))
	for i, a := range s.command {
		q[i] = strconv.Quote(a)
	}
	return "rtl433 " + strings.Join(q, " ")
}

// Run implements Pusher: it joins (or starts) the rtl_433 child of its
// command and emits its device's transmissions, each reading with the time
// its line was read, until ctx ends.
func (s *RTL433) Run(ctx context.Context, emit func([]Reading)) error {
	sub, done, err := joinSubscribed(s.receivers, s.log, s.receiverKey(),
		func(log *slog.Logger) *rtlReceiver { return newRTLReceiver(s.command, log) },
		func(r *rtlReceiver) *rtlSubscriber { return r.subscribe(s.model, s.id, s.channel) },
		(*rtlReceiver).unsubscribe)
	if err != nil {
		return err
	}
	defer done()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-sub.events:
			if len(ev.readings) == 0 {
				continue // a message of the device with nothing gatewayd publishes
			}
			s.out = s.out[:0]
			for _, rd := range ev.readings {
				rd.Time = ev.at
				s.out = append(s.out, rd)
			}
			emit(s.out)
		}
	}
}
