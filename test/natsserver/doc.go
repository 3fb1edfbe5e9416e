// Package natsserver runs real NATS servers with JetStream inside a test
// process, on loopback, so that the NATS adapters are tested against the
// server itself rather than a double: Start runs one server on a random
// port and a temporary store directory; StartCluster runs a JetStream
// cluster of several such servers (routes between them on free loopback
// ports, one store directory each), on which streams of 3 replicas run as
// they do in production (a quorum acknowledges, leaders and followers,
// elections), and whose servers a test can stop and start again on their
// stores. StartProcessCluster runs such a cluster as nats-server processes
// (the binary BuildServer makes from this module's graph), so that a test
// can kill one with SIGKILL, which no server in the test process allows,
// and start it again on its store. Every server fsyncs each write before
// acknowledging it (sync_interval: always). It is test support only:
// production code never imports it (test/ is off limits to it, as
// test/archtest checks), and it never listens on anything but 127.0.0.1.
package natsserver
