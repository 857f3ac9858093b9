package sensors

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Receiver is a receiver that several push sensors share: one rtl_433 child
// for every sensor that names the same command, one BLE scan for every ble
// sensor. It keeps its own subscribers (each sensor's Pusher subscribes in
// its Run and unsubscribes when Run returns), hands each device it hears to
// the subscribers that match it, and logs once each device that none
// matches, with what identifies it, so that an operator can add it.
type Receiver interface {
	// Run receives until ctx ends and then returns nil. An error returned
	// before that (the child exited, the adapter went away) is logged, and
	// Run is called again after a backoff: 1 s, doubling up to 1 min, back
	// to 1 s after a minute of running. Never a tight loop.
	Run(ctx context.Context) error
}

// Receivers is the registry of shared receivers, reference-counted by the
// sensors that joined them. The app owns one for the life of the daemon and
// hands it to sources in Env, so that a reload keeps a receiver running for
// the sensors that stay, and a sensor added joins the receiver already
// running.
type Receivers struct {
	log *slog.Logger

	mu       sync.Mutex
	running  map[string]*shared
	stopping map[string]*shared // stopped, Run not returned yet
	holds    int
	wg       sync.WaitGroup
}

type shared struct {
	key    string
	r      Receiver
	refs   int
	cancel context.CancelFunc
	done   chan struct{}
}

// NewReceivers returns an empty registry.
func NewReceivers(log *slog.Logger) *Receivers {
	return &Receivers{log: log, running: map[string]*shared{}, stopping: map[string]*shared{}}
}

// Join returns the receiver under key (prefix it with the source type:
// "rtl433 " + command), starting one made by newReceiver when none runs.
// The sensor leaves it by calling leave (once is enough; more are ignored):
// when the last one has left, the receiver is stopped, at the end of a Hold
// if one is open. A key already taken by a receiver of another type is an
// error.
func Join[R Receiver](rs *Receivers, key string, newReceiver func() R) (r R, leave func(), err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	s, ok := rs.running[key]
	if !ok {
		s = rs.start(key, newReceiver())
	}
	r, ok = s.r.(R)
	if !ok {
		var zero R
		return zero, nil, fmt.Errorf("receiver %q is a %T, not a %T", key, s.r, zero)
	}
	s.refs++
	var once sync.Once
	return r, func() { once.Do(func() { rs.leave(s) }) }, nil
}

// joinSubscribed joins the receiver under key, as Join does, and subscribes
// to it: a receiver it starts (made by newReceiver with a logger that names
// key) is subscribed to before it runs, so that its first messages are the
// subscriber's. A push sensor without a registry (rs nil) gets one of its
// own, logging to log. done unsubscribes, leaves and closes that registry.
func joinSubscribed[R Receiver, S any](rs *Receivers, log *slog.Logger, key string, newReceiver func(*slog.Logger) R, subscribe func(R) S, unsubscribe func(R, S)) (sub S, done func(), err error) {
	closeOwn := func() {}
	if rs == nil {
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		rs = NewReceivers(log)
		closeOwn = rs.Close
	}
	subscribed := false
	r, leave, err := Join(rs, key, func() R {
		nr := newReceiver(rs.log.With("receiver", key))
		sub, subscribed = subscribe(nr), true
		return nr
	})
	if err != nil {
		closeOwn()
		return sub, nil, err
	}
	if !subscribed {
		sub = subscribe(r)
	}
	return sub, func() {
		unsubscribe(r, sub)
		leave()
		closeOwn()
	}, nil
}

// start runs r under key; rs.mu is held. A receiver of the same key that is
// still stopping is waited for first, so that two never hold one device.
func (rs *Receivers) start(key string, r Receiver) *shared {
	ctx, cancel := context.WithCancel(context.Background())
	s := &shared{key: key, r: r, cancel: cancel, done: make(chan struct{})}
	var previous chan struct{}
	if old, ok := rs.stopping[key]; ok {
		previous = old.done
	}
	rs.running[key] = s
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		if previous != nil {
			<-previous
		}
		rs.run(ctx, s)
		rs.mu.Lock()
		if rs.stopping[key] == s {
			delete(rs.stopping, key)
		}
		close(s.done)
		rs.mu.Unlock()
	}()
	return s
}

// run calls Run until ctx ends, with a backoff after each early return.
func (rs *Receivers) run(ctx context.Context, s *shared) {
	const first, most = time.Second, time.Minute
	delay := first
	for {
		started := time.Now()
		err := s.r.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) >= most {
			delay = first
		}
		rs.log.Warn("receiver stopped; starting it again", "receiver", s.key, "err", err, "retry_in", delay.String())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, most)
	}
}

func (rs *Receivers) leave(s *shared) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	s.refs--
	if s.refs == 0 && rs.holds == 0 {
		rs.stop(s)
	}
}

// stop stops s if it is still the running receiver of its key; rs.mu is held.
func (rs *Receivers) stop(s *shared) {
	if rs.running[s.key] == s {
		delete(rs.running, s.key)
		rs.stopping[s.key] = s
	}
	s.cancel()
}

// HoldGrace is how long after a Hold is released a receiver that no sensor
// uses is kept for a sensor to join: the sensors a reload starts join in
// their own Run, a moment later.
const HoldGrace = 2 * time.Second

// Hold keeps receivers running while sensors leave and join them, until the
// returned release is called and HoldGrace more; then those that no sensor
// joined again stop. A reload holds the registry while it replaces sensors,
// so that a receiver whose sensors are changed does not stop and start
// again.
func (rs *Receivers) Hold() (release func()) {
	rs.mu.Lock()
	rs.holds++
	rs.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			time.AfterFunc(HoldGrace, func() {
				rs.mu.Lock()
				defer rs.mu.Unlock()
				rs.holds--
				if rs.holds > 0 {
					return
				}
				for _, s := range rs.running {
					if s.refs == 0 {
						rs.stop(s)
					}
				}
			})
		})
	}
}

// Running lists the keys of the receivers running now.
func (rs *Receivers) Running() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	keys := make([]string, 0, len(rs.running))
	for k := range rs.running {
		keys = append(keys, k)
	}
	return keys
}

// Close stops every receiver and waits until each Run has returned. The
// sensors should have left first; Close is for the daemon's shutdown.
func (rs *Receivers) Close() {
	rs.mu.Lock()
	for _, s := range rs.running {
		rs.stop(s)
	}
	rs.mu.Unlock()
	rs.wg.Wait()
}
