package sensors

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingReceiver counts its runs and how many run at once; fail makes Run
// return an error at once.
type countingReceiver struct {
	starts  *atomic.Int32
	running *atomic.Int32
	fail    bool
}

func (c *countingReceiver) Run(ctx context.Context) error {
	c.starts.Add(1)
	if n := c.running.Add(1); n > 1 {
		panic("two receivers of one key ran at once")
	}
	defer c.running.Add(-1)
	if c.fail {
		return errors.New("child exited")
	}
	<-ctx.Done()
	return nil
}

type otherReceiver struct{}

func (otherReceiver) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReceiversShareAndStop(t *testing.T) {
	rs := NewReceivers(slog.New(slog.DiscardHandler))
	var starts1, running1, starts2, running2 atomic.Int32
	mk1 := func() *countingReceiver { return &countingReceiver{starts: &starts1, running: &running1} }
	mk2 := func() *countingReceiver { return &countingReceiver{starts: &starts2, running: &running2} }

	a, leaveA, err := Join(rs, "test cmd1", mk1)
	if err != nil {
		t.Fatal(err)
	}
	b, leaveB, _ := Join(rs, "test cmd1", mk1)
	if a != b {
		t.Fatal("two sensors of one key got two receivers")
	}
	_, leaveC, _ := Join(rs, "test cmd2", mk2)
	eventually(t, "two receivers running", func() bool { return running1.Load() == 1 && running2.Load() == 1 })
	if _, _, err := Join(rs, "test cmd1", func() otherReceiver { return otherReceiver{} }); err == nil {
		t.Error("a key taken by another type was joined")
	}

	leaveA()
	leaveA() // ignored
	if running1.Load() != 1 {
		t.Fatal("stopped while a sensor still uses it")
	}
	leaveB()
	eventually(t, "cmd1 stopped by its last sensor leaving", func() bool { return running1.Load() == 0 })

	// Held: the last sensor leaving and a new one joining (even a moment
	// after the release) keeps it running.
	release := rs.Hold()
	leaveC()
	release()
	_, leaveD, _ := Join(rs, "test cmd2", mk2)
	if starts2.Load() != 1 || running2.Load() != 1 {
		t.Fatalf("%d starts: the held receiver was restarted", starts2.Load())
	}
	// Held with nobody joining again: stopped after the release and its
	// grace.
	release = rs.Hold()
	leaveD()
	release()
	time.Sleep(HoldGrace / 2)
	if running2.Load() != 1 {
		t.Fatal("stopped within the grace")
	}
	eventually(t, "stopped after the release", func() bool { return running2.Load() == 0 })
	rs.Close()
	if n := len(rs.Running()); n != 0 {
		t.Fatalf("%d still running", n)
	}
}

// TestReceiverRestartsWithBackoff: a receiver whose Run fails is run again,
// a second later, not in a tight loop.
func TestReceiverRestartsWithBackoff(t *testing.T) {
	rs := NewReceivers(slog.New(slog.DiscardHandler))
	var starts, running atomic.Int32
	_, leave, _ := Join(rs, "test failing", func() *countingReceiver {
		return &countingReceiver{starts: &starts, running: &running, fail: true}
	})
	eventually(t, "a second start", func() bool { return starts.Load() >= 2 })
	time.Sleep(500 * time.Millisecond)
	if n := starts.Load(); n > 2 {
		t.Fatalf("%d starts within 1.5 s: no backoff", n)
	}
	leave()
	rs.Close()
}

// TestRejoinWaitsForTheStoppingOne: a sensor that joins while the receiver of
// its key is still stopping gets a new one, which starts only after the old
// one has returned (two rtl_433 children cannot share one dongle).
func TestRejoinWaitsForTheStoppingOne(t *testing.T) {
	rs := NewReceivers(slog.New(slog.DiscardHandler))
	var starts, running atomic.Int32
	mk := func() *countingReceiver { return &countingReceiver{starts: &starts, running: &running} }
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		_, leave, _ := Join(rs, "test dongle", mk)
		wg.Add(1)
		go func() { defer wg.Done(); leave() }()
	}
	wg.Wait()
	rs.Close() // the panic in Run would have fired on an overlap
}
