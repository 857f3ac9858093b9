package config

import "testing"

func TestHomeAssistant(t *testing.T) {
	c, err := Parse("empty.yaml", nil, lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.HomeAssistant != (HomeAssistant{Discovery: false, Prefix: "homeassistant"}) {
		t.Errorf("defaults: %+v", c.HomeAssistant)
	}
	c, err = loadTestdata(t, "testdata/ha.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.HomeAssistant != (HomeAssistant{Discovery: true, Prefix: "ha/discovery"}) || c.Gateway.ID != "Box_1" {
		t.Errorf("ha.good.yaml: %+v, gateway %q", c.HomeAssistant, c.Gateway.ID)
	}
	// Without discovery, ids and shared topics are none of Home Assistant's business.
	_, err = Parse("off.yaml", []byte("gateway: {id: box.1}\npublish: {topic: 'gw/{sensor}'}\n"), lookupTestEnv)
	if err != nil {
		t.Errorf("discovery off: %v", err)
	}
}
