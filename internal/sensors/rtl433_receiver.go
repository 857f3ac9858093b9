package sensors

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rtlReceiver runs one rtl_433 child and hands what it hears to the sensors
// that share it (every rtl433 sensor with the same command). One Run is one
// life of the child: it returns when the child exits (the caller starts it
// again after a backoff) or when ctx ends (the child's process group is
// ended first).
type rtlReceiver struct {
	command []string
	log     *slog.Logger
	grace   time.Duration // rtlStopGrace; shorter in tests

	mu    sync.Mutex
	subs  map[*rtlSubscriber]struct{}
	heard map[string]bool // unmatched devices already logged

	tailMu sync.Mutex
	tail   []string // the last lines of the child's stderr, for the exit error

	skipped  atomic.Uint64 // lines that were not device messages
	dropped  atomic.Uint64 // messages a slow subscriber had no room for
	received atomic.Uint64 // device messages
}

// rtlEvent is one transmission for one sensor: its readings and when
// gatewayd read the line (a replayed file's own "time" is an offset, and a
// receiver's clock may be off).
type rtlEvent struct {
	at       time.Time
	readings []Reading
}

// rtlSubscriber is one sensor's interest in a receiver.
type rtlSubscriber struct {
	model, id, channel string // normalised; id and channel "" match any
	events             chan rtlEvent
}

// rtlSubscriberQueue is how many transmissions may wait for a sensor.
const rtlSubscriberQueue = 64

// rtlMaxHeard bounds the memory of unmatched devices: in a town a receiver
// hears hundreds (car tyre sensors among them), and some change their id
// at every battery change.
const rtlMaxHeard = 1000

func newRTLReceiver(command []string, log *slog.Logger) *rtlReceiver {
	return &rtlReceiver{command: command, log: log, grace: rtlStopGrace, subs: map[*rtlSubscriber]struct{}{}, heard: map[string]bool{}}
}

func (r *rtlReceiver) subscribe(model, id, channel string) *rtlSubscriber {
	s := &rtlSubscriber{model: strings.ToLower(model), id: id, channel: channel, events: make(chan rtlEvent, rtlSubscriberQueue)}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	return s
}

func (r *rtlReceiver) unsubscribe(s *rtlSubscriber) {
	r.mu.Lock()
	delete(r.subs, s)
	r.mu.Unlock()
}

func (s *rtlSubscriber) matches(m *rtlMessage) bool {
	return strings.ToLower(m.model) == s.model && (s.id == "" || s.id == m.id) && (s.channel == "" || s.channel == m.channel)
}

// rtlStopGrace is how long the child has to exit after SIGTERM (rtl_433
// then closes the stick) before its process group gets SIGKILL.
const rtlStopGrace = 3 * time.Second

// Run starts the child, reads its output until it exits or ctx ends, and
// returns: nil when ctx ended, else why the child is gone.
func (r *rtlReceiver) Run(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return nil
	}
	cmd := exec.Command(r.command[0], r.command[1:]...)
	rtlChildAttrs(cmd) // own process group, SIGKILL when gatewayd dies
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	r.tailMu.Lock()
	r.tail = r.tail[:0]
	r.tailMu.Unlock()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", r.command[0], err)
	}
	r.log.Info("rtl_433 started", "command", strings.Join(r.command, " "), "pid", cmd.Process.Pid)

	// The child's end: when ctx ends, or when its output ends (it exited,
	// or closed stdout and hangs), its process group gets SIGTERM, and
	// SIGKILL if it is still there rtlStopGrace later.
	ended, exited := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-ended:
		}
		select {
		case <-exited:
			return
		default:
		}
		signalGroup(cmd, sigTERM)
		t := time.NewTimer(r.grace)
		defer t.Stop()
		select {
		case <-t.C:
			signalGroup(cmd, sigKILL)
		case <-exited:
		}
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.logStderr(stderr)
	}()
	readErr := r.readLines(stdout)
	close(ended)
	wg.Wait()
	waitErr := cmd.Wait()
	close(exited)
	signalGroup(cmd, sigKILL) // whatever the child left in its group
	if ctx.Err() != nil {
		return nil
	}
	switch {
	case readErr != nil:
		return fmt.Errorf("reading rtl_433's output: %w%s", readErr, r.stderrTail())
	case waitErr != nil:
		return fmt.Errorf("rtl_433 exited: %w%s", waitErr, r.stderrTail())
	}
	return fmt.Errorf("rtl_433 exited with status 0%s", r.stderrTail())
}

// readLines reads JSON lines until the end of the output.
func (r *rtlReceiver) readLines(out io.Reader) error {
	br := bufio.NewReaderSize(out, 2*rtlMaxLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of the line
				_, err = br.ReadSlice('\n')
			}
			r.skip(errRTLTooLong, nil)
			if err != nil {
				return ignoreEOF(err)
			}
			continue
		case err != nil:
			if len(line) > 0 {
				r.skip(errRTLHalfLine, line)
			}
			return ignoreEOF(err)
		}
		r.handle(line, time.Now())
	}
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// handle parses one line read at t and hands it to the sensors it matches.
func (r *rtlReceiver) handle(line []byte, t time.Time) {
	m, err := parseRTL433(line)
	if err != nil {
		r.skip(err, line)
		return
	}
	r.received.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	matched := false
	for s := range r.subs {
		if !s.matches(&m) {
			continue
		}
		matched = true
		select {
		case s.events <- rtlEvent{at: t, readings: m.readings}:
		default:
			if r.dropped.Add(1) == 1 {
				r.log.Warn("rtl_433: a sensor does not keep up; transmissions dropped", "model", m.model)
			}
		}
	}
	if !matched {
		r.unmatched(&m)
	}
}

// unmatched logs, once, a device that no sensor names, with what identifies
// it and what it sends, so that an operator can add it. r.mu is held.
func (r *rtlReceiver) unmatched(m *rtlMessage) {
	key := m.model + "\x00" + m.id + "\x00" + m.channel
	if r.heard[key] {
		return
	}
	if len(r.heard) >= rtlMaxHeard {
		if len(r.heard) == rtlMaxHeard {
			r.heard[""] = true // logged once
			r.log.Info("rtl_433 heard more devices that no sensor names; no longer logging them", "logged", rtlMaxHeard)
		}
		return
	}
	r.heard[key] = true
	var qs []string
	for _, rd := range m.readings {
		qs = append(qs, rd.Quantity)
	}
	r.log.Info("rtl_433 heard a device that no sensor names", "model", m.model, "id", m.id, "channel", m.channel, "quantities", strings.Join(qs, ","))
}

// skip counts a line that is not a device message. The first is logged at
// warn, the next 99 at debug, and then one in a thousand at warn: a stream
// of garbage must not flood the log.
func (r *rtlReceiver) skip(why error, line []byte) {
	n := r.skipped.Add(1)
	switch {
	case n == 1 || n%1000 == 0:
		r.log.Warn("rtl_433 output line skipped", "err", why, "line", quoteShort(string(line)), "skipped", n)
	case n <= 100:
		r.log.Debug("rtl_433 output line skipped", "err", why, "line", quoteShort(string(line)), "skipped", n)
	}
}

// rtlStderrBurst and rtlStderrEvery rate-limit rtl_433's stderr in the
// debug log: its banner and tuner messages at start, then one line a
// second at most (a stick with a bad USB link can print hundreds).
const (
	rtlStderrBurst = 50
	rtlStderrEvery = time.Second
)

// logStderr logs what rtl_433 writes to stderr at debug, rate-limited, and
// reads it to the end so that the child never blocks on a full pipe.
func (r *rtlReceiver) logStderr(stderr io.Reader) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 4096), 64<<10)
	tokens, last, suppressed := rtlStderrBurst, time.Now(), 0
	for sc.Scan() {
		r.keepTail(sc.Text())
		now := time.Now()
		if refill := int(now.Sub(last) / rtlStderrEvery); refill > 0 {
			tokens, last = min(rtlStderrBurst, tokens+refill), now
		}
		if tokens == 0 {
			suppressed++
			continue
		}
		tokens--
		if suppressed > 0 {
			r.log.Debug("rtl_433 stderr lines not logged", "suppressed", suppressed)
			suppressed = 0
		}
		r.log.Debug("rtl_433", "stderr", quoteShort(strings.ToValidUTF8(sc.Text(), "?")))
	}
	io.Copy(io.Discard, stderr) // a line longer than 64 KiB stops the scanner
}

// rtlTailLines is how many of the last stderr lines an exit error shows:
// rtl_433 says why it stops there ("No supported devices found.",
// "usb_claim_interface error -6").
const rtlTailLines = 3

func (r *rtlReceiver) keepTail(line string) {
	line = strings.TrimSpace(line)
	if line == "" {
		return
	}
	r.tailMu.Lock()
	defer r.tailMu.Unlock()
	if len(r.tail) == rtlTailLines {
		r.tail = append(r.tail[:0], r.tail[1:]...)
	}
	r.tail = append(r.tail, line)
}

// stderrTail formats the kept stderr lines for an error, as exec does.
func (r *rtlReceiver) stderrTail() string {
	r.tailMu.Lock()
	defer r.tailMu.Unlock()
	return stderrTail([]byte(strings.Join(r.tail, "\n")))
}
