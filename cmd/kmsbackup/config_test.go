package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseByteRate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1 << 20, true},
		{"4MiB", 4 << 20, true},
		{"4mib/s", 4 << 20, true},
		{"512KiB", 512 << 10, true},
		{"2GiB", 2 << 30, true},
		{"100B", 100, true},
		{" 8 MiB ", 8 << 20, true},
		{"", 0, false},
		{"-1", 0, false},
		{"4MB", 0, false},
		{"1.5MiB", 0, false},
		{"fast", 0, false},
		{"9999999999GiB", 0, false},
	} {
		got, err := parseByteRate(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseByteRate(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestConfigScrub(t *testing.T) {
	base := Config{Dev: true, DataDir: "d", Listen: "127.0.0.1:0", LogFormat: "text", LogLevel: "info"}
	if err := base.Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	if got := base.ScrubBytesPerSecond(); got != 4<<20 {
		t.Errorf("an empty --scrub-rate is the default: %d bytes a second", got)
	}
	off := base
	off.ScrubInterval, off.ScrubRate = 0, "0"
	if err := off.Validate(); err != nil || off.ScrubBytesPerSecond() != 0 {
		t.Errorf("scrub off and unpaced: %v, %d", err, off.ScrubBytesPerSecond())
	}
	bad := base
	bad.ScrubInterval, bad.ScrubRate = -time.Hour, "fast"
	err := bad.Validate()
	for _, want := range []string{"--scrub-interval must not be negative", `--scrub-rate: "fast" is not a rate`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q in it", err, want)
		}
	}
}

func TestConfigKeyLease(t *testing.T) {
	base := Config{Dev: true, DataDir: "d", Listen: "127.0.0.1:0", LogFormat: "text", LogLevel: "info"}
	if got := base.KeyLeaseOrDefault(); got != defaultKeyLease {
		t.Errorf("no --key-lease: %v, want the default %v", got, defaultKeyLease)
	}
	for _, d := range []time.Duration{minKeyLease, 5 * time.Second, maxKeyLease} {
		c := base
		c.KeyLease = d
		if err := c.Validate(); err != nil || c.KeyLeaseOrDefault() != d {
			t.Errorf("--key-lease %v: %v, %v", d, err, c.KeyLeaseOrDefault())
		}
	}
	for _, d := range []time.Duration{-time.Second, time.Millisecond, 2 * time.Minute} {
		c := base
		c.KeyLease = d
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--key-lease must be between") {
			t.Errorf("--key-lease %v: Validate() = %v", d, err)
		}
	}
}

func TestConfigTrustedProxies(t *testing.T) {
	cfg := Config{Dev: true, DataDir: "d", Listen: "127.0.0.1:0", LogFormat: "text", LogLevel: "info",
		TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7,fd00::/8"}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid proxies: %v", err)
	}
	cfg.TrustedProxies = []string{"10.0.0.0/8", "proxy.example"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `--trusted-proxy: trusted proxy "proxy.example"`) {
		t.Fatalf("a host name: %v, want a refusal naming it", err)
	}
}

func TestConfigNATSReplicas(t *testing.T) {
	base := Config{Dev: true, DataDir: "d", Listen: "127.0.0.1:0", LogFormat: "text", LogLevel: "info", MasterKeyFile: "k",
		EventLog: "nats://n1:4222,nats://n2:4222,nats://n3:4222", Bus: "nats://n1:4222,nats://n2:4222"}
	for _, n := range []int{0, 1, 3, 5} {
		c := base
		c.NATSReplicas = n
		if err := c.Validate(); err != nil {
			t.Errorf("--nats-replicas %d on a list of NATS URLs: %v", n, err)
		}
	}
	if got := base.LogKind(); got != "nats" {
		t.Errorf("a list of NATS URLs is a %q log, want nats", got)
	}
	for _, n := range []int{-1, 6} {
		c := base
		c.NATSReplicas = n
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--nats-replicas must be between 1 and 5") {
			t.Errorf("--nats-replicas %d: %v, want a refusal", n, err)
		}
	}
	embedded := base
	embedded.EventLog, embedded.Bus, embedded.NATSReplicas = "pebble", "gochannel", 3
	if err := embedded.Validate(); err == nil || !strings.Contains(err.Error(), "--nats-replicas concerns NATS JetStream") {
		t.Errorf("--nats-replicas 3 without NATS: %v, want a refusal", err)
	}
	busOnly := embedded
	busOnly.Bus = "nats://n1:4222"
	if err := busOnly.Validate(); err != nil {
		t.Errorf("--nats-replicas 3 for a NATS bus beside the embedded log: %v", err)
	}
}
