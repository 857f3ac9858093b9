package sensors

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

func init() { Register("simulated", func() Config { return &SimulatedConfig{} }) }

// SimulatedConfig is the simulated source's own keys.
type SimulatedConfig struct {
	// Seed makes the noise repeatable; 0 picks a random seed.
	Seed int64 `yaml:"seed"`
}

// Validate implements Config; every seed is valid.
func (c *SimulatedConfig) Validate() error { return nil }

// New implements Config.
func (c *SimulatedConfig) New(env Env) (Source, error) {
	seed := uint64(c.Seed)
	if seed == 0 {
		seed = rand.Uint64()
	}
	// The sensor's name shifts the phase a little, so that two simulated
	// rooms do not read the same numbers.
	var h uint64 = 14695981039346656037
	for i := 0; i < len(env.Name); i++ {
		h = (h ^ uint64(env.Name[i])) * 1099511628211
	}
	return &Simulated{
		rng:   rand.New(rand.NewPCG(seed, h)),
		phase: float64(h%600) / 600,
		now:   time.Now,
	}, nil
}

// Simulated produces a plausible indoor climate: a daily cycle (warmest in the
// afternoon, driest then too) plus slowly wandering noise. The core reads one
// source from one goroutine at a time, so it keeps no lock.
type Simulated struct {
	rng      *rand.Rand
	phase    float64 // hours added to the time of day
	now      func() time.Time
	tNoise   float64
	hNoise   float64
	readings [2]Reading
}

// Instant implements Instant: a simulated read never blocks.
func (s *Simulated) Instant() {}

// Read implements Source. It returns a slice that is valid until the next Read.
func (s *Simulated) Read(ctx context.Context) ([]Reading, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t := s.now()
	hour := float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600 + s.phase
	day := math.Sin(2 * math.Pi * (hour - 9) / 24) // +1 at 15:00, -1 at 03:00

	// AR(1) noise: wanders but stays near zero.
	s.tNoise = 0.95*s.tNoise + 0.05*s.rng.NormFloat64()
	s.hNoise = 0.95*s.hNoise + 0.3*s.rng.NormFloat64()

	temp := 21 + 2.5*day + s.tNoise
	hum := math.Min(100, math.Max(0, 45-8*day+s.hNoise))
	s.readings[0] = Reading{Quantity: Temperature, Value: round2(temp)}
	s.readings[1] = Reading{Quantity: Humidity, Value: round2(hum)}
	return s.readings[:], nil
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }
