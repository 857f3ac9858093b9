package sensors

import (
	"regexp"
	"strings"
	"testing"
)

// quantityRule is the rule ValidQuantity implements, as the regexp the
// README states it with.
var quantityRule = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

func TestValidQuantity(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"temperature", true}, {"co2", true}, {"pm2_5", true}, {"a", true},
		{strings.Repeat("a", 64), true}, {strings.Repeat("a", 65), false},
		{"", false}, {"2x", false}, {"_x", false}, {"Temp", false}, {"temp-c", false},
		{"temp/c", false}, {"temp c", false}, {"é", false}, {"temp\n", false},
	} {
		if got := ValidQuantity(c.name); got != c.ok {
			t.Errorf("ValidQuantity(%q) = %v, want %v", c.name, got, c.ok)
		}
	}
}

func FuzzValidQuantity(f *testing.F) {
	for _, s := range []string{"temperature", "pm2_5", "", "A", "a-b", strings.Repeat("z", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := ValidQuantity(name), quantityRule.MatchString(name); got != want {
			t.Fatalf("ValidQuantity(%q) = %v, the rule says %v", name, got, want)
		}
	})
}
