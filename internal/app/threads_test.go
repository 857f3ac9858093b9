package app

import (
	"runtime"
	"testing"

	"github.com/gatewayd/gatewayd/internal/config"
)

func TestOneThread(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMAXPROCS" {
				return v
			}
			return ""
		}
	}
	runtime.GOMAXPROCS(2)
	if _, set := OneThread(&config.Config{}, env("2")); set || runtime.GOMAXPROCS(0) != 2 {
		t.Fatalf("GOMAXPROCS in the environment: changed to %d", runtime.GOMAXPROCS(0))
	}
	withBroker := &config.Config{}
	withBroker.EmbeddedBroker.Enabled = true
	if _, set := OneThread(withBroker, env("")); set || runtime.GOMAXPROCS(0) != 2 {
		t.Fatalf("embedded broker: changed to %d", runtime.GOMAXPROCS(0))
	}
	if prev, set := OneThread(&config.Config{}, env("")); !set || prev != 2 || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("default: set %v, prev %d, now %d; want true, 2, 1", set, prev, runtime.GOMAXPROCS(0))
	}
}
