// Package logging is the daemon's slog logger whose level and format
// (log.level, log.format) a reload changes in place: every logger derived
// from it with With, in every component, follows the change.
package logging

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/gatewayd/gatewayd/internal/config"
)

// Switch holds the current handler. Create it with New.
type Switch struct {
	w     io.Writer
	level slog.LevelVar

	mu     sync.Mutex
	format string
	gen    atomic.Uint64 // bumped at every format change
	base   atomic.Pointer[slog.Handler]
}

// New returns a switch writing to w in the format and at the level of c.
func New(w io.Writer, c config.Log) *Switch {
	s := &Switch{w: w}
	s.Set(c)
	return s
}

// Logger returns the logger every component derives its own from.
func (s *Switch) Logger() *slog.Logger { return slog.New(&handler{s: s}) }

// Set changes the level and the format; the next record of every derived
// logger uses them.
func (s *Switch) Set(c config.Log) {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config
	s.level.Set(level)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Format == s.format && s.base.Load() != nil {
		return
	}
	s.format = c.Format
	opts := &slog.HandlerOptions{Level: &s.level}
	var h slog.Handler
	if c.Format == "json" {
		h = slog.NewJSONHandler(s.w, opts)
	} else {
		h = slog.NewTextHandler(s.w, opts)
	}
	s.base.Store(&h)
	s.gen.Add(1)
}

// handler is a derived logger's handler: the attributes and groups of its
// With calls, applied to the current base handler, rebuilt after a change
// of format.
type handler struct {
	s      *Switch
	parent *handler
	attrs  []slog.Attr // this level's attributes, or
	group  string      // this level's group

	cache atomic.Pointer[built]
}

type built struct {
	gen uint64
	h   slog.Handler
}

func (h *handler) current() slog.Handler {
	gen := h.s.gen.Load()
	if b := h.cache.Load(); b != nil && b.gen == gen {
		return b.h
	}
	var inner slog.Handler
	if h.parent == nil {
		inner = *h.s.base.Load()
	} else {
		inner = h.parent.current()
	}
	switch {
	case h.group != "":
		inner = inner.WithGroup(h.group)
	case len(h.attrs) > 0:
		inner = inner.WithAttrs(h.attrs)
	}
	h.cache.Store(&built{gen, inner})
	return inner
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.s.level.Level() }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	return h.current().Handle(ctx, r)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return &handler{s: h.s, parent: h, attrs: attrs}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &handler{s: h.s, parent: h, group: name}
}
