package logging

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/gatewayd/gatewayd/internal/config"
)

func TestSwitchFollowsLevelAndFormat(t *testing.T) {
	var b bytes.Buffer
	sw := New(&b, config.Log{Level: "info", Format: "text"})
	log := sw.Logger().With("component", "session").WithGroup("g").With("k", 1)
	log.Debug("hidden")
	log.Info("as text")
	sw.Set(config.Log{Level: "debug", Format: "json"})
	log.Debug("as json")
	sw.Set(config.Log{Level: "warn", Format: "json"})
	log.Info("hidden too")
	log.Warn("warned")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	if !strings.Contains(lines[0], `level=INFO msg="as text" component=session g.k=1`) {
		t.Errorf("text line: %s", lines[0])
	}
	if !strings.Contains(lines[1], `"level":"DEBUG","msg":"as json","component":"session","g":{"k":1}`) {
		t.Errorf("json line: %s", lines[1])
	}
	if !strings.Contains(lines[2], `"msg":"warned"`) {
		t.Errorf("warn line: %s", lines[2])
	}
}

func TestSwitchConcurrent(t *testing.T) {
	var mu sync.Mutex
	var b bytes.Buffer
	sw := New(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return b.Write(p) }), config.Log{Level: "info", Format: "text"})
	log := sw.Logger().With("a", 1)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				log.Info("x", "j", j)
			}
		}()
	}
	for i := 0; i < 50; i++ {
		sw.Set(config.Log{Level: "info", Format: []string{"text", "json"}[i%2]})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 800 {
		t.Errorf("%d lines", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
