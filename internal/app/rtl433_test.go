package app_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// The daemon with rtl433 sensors on Debian's rtl_433 replaying recordings
// of two real sensors (one rtl_433 per recording, since each replay is its
// own command): each sensor publishes its device's readings, and a device
// no sensor names is logged once.
func TestRTL433Replayed(t *testing.T) {
	bin, err := exec.LookPath("rtl_433")
	if err != nil {
		if os.Getenv("GATEWAYD_REQUIRE_RTL433") != "" {
			t.Fatal("rtl_433 not found (apt-get install rtl-433)")
		}
		t.Skip("rtl_433 not found (apt-get install rtl-433)")
	}
	rec := func(name string) string {
		p, err := filepath.Abs(filepath.Join("../sensors/testdata/rtl433", name))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	b := testbroker.Start(t, testbroker.Options{})
	sub := subscribe(t, b.URL(), "rtl-sub", "gatewayd/gw/+/+")
	d := startDaemon(t, baseYAML(b.URL())+fmt.Sprintf(`sensors:
  - {name: garden, type: rtl433, model: Nexus-TH, id: 181, channel: 2, command: [%q, "-r", %q, "-F", "json"]}
  - {name: other, type: rtl433, model: Nexus-TH, id: 99, command: [%q, "-r", %q, "-F", "json"]}
`, bin, rec("nexus_th.cu8"), bin, rec("fineoffset_wh2.cu8")))

	testbroker.Eventually(t, 15*time.Second, "garden temperature 19", sub.sees(t, "gatewayd/gw/garden/temperature", 19))
	testbroker.Eventually(t, 15*time.Second, "garden humidity 71", sub.sees(t, "gatewayd/gw/garden/humidity", 71))
	testbroker.Eventually(t, 15*time.Second, "garden battery_ok 0", sub.sees(t, "gatewayd/gw/garden/battery_ok", 0))
	testbroker.Eventually(t, 15*time.Second, "the WH2 no sensor names is logged", func() bool {
		return regexp.MustCompile(`"msg":"rtl_433 heard a device that no sensor names".*"model":"Fineoffset-WH2","id":"209"`).MatchString(d.logs.String())
	})
	for _, m := range sub.messages() {
		if m.Topic == "gatewayd/gw/other/temperature" {
			t.Errorf("a reading of a device that is not the sensor's: %s", m.Payload)
		}
	}
}
