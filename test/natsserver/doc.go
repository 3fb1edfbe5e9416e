// Package natsserver runs a real NATS server with JetStream inside a test
// process, on a random local port and a temporary store directory, so that
// the NATS adapters are tested against the server itself rather than a
// double. It is test support only: production code never imports it (test/
// is off limits to it, as test/archtest checks), and it never listens on
// anything but 127.0.0.1.
package natsserver
