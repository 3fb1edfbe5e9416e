// Package natsconn is the one connection policy of the adapters that talk
// to NATS (the Watermill bus and the JetStream stores): a connection that
// reconnects forever, never buffers publishes while disconnected, and logs
// what no call can return. It holds no state of its own.
package natsconn
