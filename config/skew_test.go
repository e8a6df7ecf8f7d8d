package config_test

import (
	"strings"
	"testing"
	"time"

	"meridian/config"
)

// TestSkewKeys checks the [skew] keys' defaults and that each is read.
func TestSkewKeys(t *testing.T) {
	const head = "[node]\nname = \"n1\"\nregion = \"r\"\n[regions.r]\n"
	c, err := config.Parse([]byte(head), "defaults.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Skew.Recording() || c.Skew.ExchangeInterval.Duration != 15*time.Second || c.Skew.TopK != 100000 {
		t.Errorf("defaults: recording %t, exchange_interval %s, top_k %d; want true, 15s, 100000",
			c.Skew.Recording(), c.Skew.ExchangeInterval, c.Skew.TopK)
	}
	c, err = config.Parse([]byte(head+"[skew]\nenabled = false\nexchange_interval = \"2s\"\n"), "set.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Skew.Recording() || c.Skew.ExchangeInterval.Duration != 2*time.Second {
		t.Errorf("set: recording %t, exchange_interval %s; want false, 2s", c.Skew.Recording(), c.Skew.ExchangeInterval)
	}
	_, err = config.Parse([]byte(head+"[skew]\nexchange_interval = \"11m\"\n"), "long.toml")
	if err == nil || !strings.Contains(err.Error(), "skew.exchange_interval: 11m0s is outside 1s..10m") {
		t.Errorf("an 11m exchange_interval: got %v", err)
	}
}
