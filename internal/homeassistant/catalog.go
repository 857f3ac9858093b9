package homeassistant

import (
	"fmt"
	"iter"

	"github.com/gatewayd/gatewayd/internal/sensors"
)

// Catalog knows what gatewayd announces: the gateway's entities, and one
// entity per sensor and quantity seen. Quantities are learnt from the
// readings themselves (Observe), since only reading a sensor tells which
// quantities it has (an iio device's channels, an exec program's output).
// A Catalog is not safe for concurrent use; Announcer guards it.
type Catalog struct {
	cfg     Config
	sensors map[string]*Sensor // by name
	series  []series           // in the order first seen
	index   map[string]int     // "sensor/quantity" -> position in series
	owners  map[string]string  // config topic -> "sensor/quantity" ("" for the gateway's own)
}

// series is one sensor's one quantity, with the topic its readings go to.
type series struct {
	sensor, quantity, stateTopic string
}

func (s series) key() string { return s.sensor + "/" + s.quantity }

// NewCatalog returns a catalog of cfg with no series seen yet.
func NewCatalog(cfg Config) *Catalog {
	c := &Catalog{index: map[string]int{}}
	c.setConfig(cfg)
	return c
}

func (c *Catalog) setConfig(cfg Config) {
	c.cfg = cfg
	c.sensors = make(map[string]*Sensor, len(cfg.Sensors))
	for i := range c.cfg.Sensors {
		s := &c.cfg.Sensors[i]
		c.sensors[s.Name] = s
	}
	c.owners = map[string]string{}
	for _, m := range c.cfg.gatewayEntities() {
		c.owners[m.Topic] = ""
	}
}

// Config is the config the catalog announces.
func (c *Catalog) Config() Config { return c.cfg }

// Observe records that a reading of quantity from sensor goes to
// stateTopic. It returns the series' discovery message when the series is
// new or its topic changed, so that the caller announces it before the
// reading goes out; ok is false when there is nothing new to announce. A
// sensor that is not configured (one removed by a reload, still finishing
// a read) is ignored; a series whose discovery topic another series
// already has is refused with an error, once.
func (c *Catalog) Observe(sensor, quantity, stateTopic string) (m Message, ok bool, err error) {
	s, known := c.sensors[sensor]
	if !known {
		return Message{}, false, nil
	}
	se := series{sensor: sensor, quantity: quantity, stateTopic: stateTopic}
	if i, seen := c.index[se.key()]; seen {
		if c.series[i].stateTopic == stateTopic {
			return Message{}, false, nil
		}
		c.series[i].stateTopic = stateTopic
		return c.cfg.seriesEntity(s, quantity, sensors.Unit(quantity), stateTopic), true, nil
	}
	c.index[se.key()] = len(c.series)
	c.series = append(c.series, se)
	if !ValidID(sensor + "_" + quantity) {
		return Message{}, false, fmt.Errorf("sensor %q, quantity %q: not announced to Home Assistant: its discovery id may hold only a-z, A-Z, 0-9, _ and -", sensor, quantity)
	}
	m = c.cfg.seriesEntity(s, quantity, sensors.Unit(quantity), stateTopic)
	if owner, taken := c.owners[m.Topic]; taken {
		if owner == "" {
			owner = "the gateway's own entities"
		}
		return Message{}, false, fmt.Errorf("sensor %q, quantity %q: not announced to Home Assistant: its discovery topic %s is already %s's", sensor, quantity, m.Topic, owner)
	}
	c.owners[m.Topic] = se.key()
	return m, true, nil
}

// Snapshot is the catalog's content at one moment, to be sent while the
// catalog goes on learning.
type Snapshot struct {
	cfg     Config
	sensors map[string]*Sensor // the catalog's, never changed: setConfig makes a new one
	series  []series
}

// Snapshot copies what is needed to render every message; a few words per
// series, so that 20,000 series cost a megabyte, not the 15 MB of their
// payloads.
func (c *Catalog) Snapshot() Snapshot {
	return Snapshot{cfg: c.cfg, sensors: c.sensors, series: append([]series(nil), c.series...)}
}

// Messages yields every discovery config: the gateway's entities first,
// then each series in the order seen. This is what goes out after every
// connect and when Home Assistant comes online.
func (s Snapshot) Messages() iter.Seq[Message] {
	return func(yield func(Message) bool) {
		owners := map[string]bool{}
		for _, m := range s.cfg.gatewayEntities() {
			owners[m.Topic] = true
			if !yield(m) {
				return
			}
		}
		for _, se := range s.series {
			sensor := s.sensors[se.sensor]
			if sensor == nil || !ValidID(se.sensor+"_"+se.quantity) {
				continue
			}
			m := s.cfg.seriesEntity(sensor, se.quantity, sensors.Unit(se.quantity), se.stateTopic)
			if owners[m.Topic] {
				continue // a collision, refused (and logged) by Observe
			}
			owners[m.Topic] = true
			if !yield(m) {
				return
			}
		}
	}
}

// Len is the number of messages Messages yields at most.
func (s Snapshot) Len() int { return len(s.cfg.gatewayEntities()) + len(s.series) }

// Reload replaces the config. The series of sensors that are still
// configured are kept, with their state topics made again from the new
// topic templates (the next reading corrects one if it differs); those of
// removed sensors are forgotten. It returns the clearing messages (empty
// payloads) for every discovery topic that the old config announced and
// the new one does not: the configs of removed sensors, and all of them
// when the gateway id or the prefix changed. Everything else is to be
// announced again, since a payload may have changed (an interval, a topic,
// the availability).
func (c *Catalog) Reload(cfg Config) (clear []Message) {
	before := c.Snapshot()
	c.setConfig(cfg)
	kept := c.series[:0]
	c.index = map[string]int{}
	for _, se := range before.series {
		s := c.sensors[se.sensor]
		if s == nil {
			continue
		}
		se.stateTopic = StateTopic(s.Topic, cfg.Gateway, se.sensor, se.quantity)
		c.index[se.key()] = len(kept)
		kept = append(kept, se)
	}
	c.series = kept
	c.rebuildOwners()
	for m := range before.Messages() {
		if !c.announces(m.Topic) {
			clear = append(clear, Message{Topic: m.Topic})
		}
	}
	return clear
}

// announces reports whether Messages yields a config on the discovery
// topic t: the topics with an owner are exactly those.
func (c *Catalog) announces(t string) bool {
	_, ok := c.owners[t]
	return ok
}

// rebuildOwners assigns every discovery topic to its owner, the gateway
// first and then the series in the order seen, as Messages does.
func (c *Catalog) rebuildOwners() {
	for _, se := range c.series {
		s := c.sensors[se.sensor]
		if s == nil || !ValidID(se.sensor+"_"+se.quantity) {
			continue
		}
		t := c.cfg.configTopic(classOf(se.quantity, sensors.Unit(se.quantity)).component, se.sensor+"_"+se.quantity)
		if _, taken := c.owners[t]; !taken {
			c.owners[t] = se.key()
		}
	}
}
