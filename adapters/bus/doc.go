// Package bus carries kmsbackup's public event stream over Watermill: a
// Publisher that puts each public event on the topic kmsbackup_events (JSON
// of schema kmsbackup.event/v1, message UUID = event ID, metadata position,
// account, type and schema), and a live Subscriber that reads them back for
// `events tail`. It implements commands.PublicEventPublisher and
// commands.PublicEventSubscriber on any Watermill message.Publisher and
// message.Subscriber: the embedded GoChannel (NewGoChannel) on one machine,
// NATS JetStream (NewNATS; nats.go says how its streams and consumers are
// set up) beyond one.
//
// It also carries the other direction: the events an external KMS
// publishes on IngestTopic, which IngestHandler hands to the ingest use
// case (commands.KMSIngest) on a Watermill router, acking what is ingested
// or can never be, and nacking what a redelivery may cure.
//
// It never decides what is published (commands.PublishEvents does, from
// the log), never reads the log, and never sees plaintext: the events it
// carries hold key material only sealed and secret values only as KMS
// ciphertext. Delivery is at least once and possibly out of order; consumers
// dedupe on the message UUID (see docs/events.md).
package bus
