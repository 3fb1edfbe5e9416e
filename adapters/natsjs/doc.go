// Package natsjs keeps on NATS JetStream what the nodes of a deployment
// that runs beyond one machine share: the event log (commands.EventLog, on
// a stream), the envelope's wrapped data keys (commands.KeyStore,
// on a key-value bucket) and the backup blobs (commands.BlobStore, on an
// object store bucket). The event log never deletes, purges or expires a
// message; only DeleteWrapped and DestroyBlobs remove anything, and only
// what they were asked to. The package never creates a durable consumer
// and never logs event data, key records or blob bytes.
//
// # Connections
//
// Open gives the event log a connection of its own. The key store and the
// blob store share one Conn (Connect), which the caller owns and closes
// after them: OpenKeyStore and OpenBlobs create or update their bucket
// (idempotent, so every node opens them) and bind to it. Every connection
// reconnects forever and fails calls while it is down instead of buffering
// them; errors become domain sentinels at this boundary
// (domain.ErrUnavailable for anything the server or the network did).
// Log.Ping, KeyStore.Ping and Blobs.Ping check their stream for /readyz.
//
// # Event log layout
//
// One JetStream stream (Options.Stream, default KMSBACKUP_LOG; file
// storage, limits retention with no limit, DiscardNew, deletes and purges
// denied, direct get and atomic publish allowed) holds the whole log on the
// subjects <prefix>.> (Options.SubjectPrefix, default kmsbackup.log):
//
//   - the events of stream S on <prefix>.e.<token(S)>, where the token
//     keeps letters, digits, '-' and '_' and writes every other byte as '~'
//     and two hex digits (so "kms-kms_01H..." is its own token, and '.',
//     '*', '>' or spaces can never split or widen a subject);
//   - one event-ID marker per event on <prefix>.id.<event ID>.
//
// An event's position is the JetStream sequence of its message, and its
// revision (0-based in its stream) is stored in the message with every
// other envelope field in a compact versioned binary payload (codec.go).
// Positions strictly increase but are not contiguous: the markers take
// sequences too.
//
// # Appends are atomic batches
//
// Append publishes one JetStream atomic batch (nats-server 2.12 or later):
// first the batch's markers, each expecting its subject to be empty
// (Nats-Expected-Last-Subject-Sequence: 0), then its events, the first
// expecting the stream's subject to end at the sequence of the stream's
// last event (0 for a new stream). The server commits all of it or none,
// with consecutive sequences, so:
//
//   - a batch of events is atomic and its positions follow from the
//     sequence the server acknowledges;
//   - optimistic concurrency is the server's: a lost race is refused
//     (JetStream error 10071, or 10164 on replicated streams) and becomes
//     domain.ErrWrongExpectedRevision;
//   - an event ID can be written once in the whole log, forever, and the
//     marker that says so is committed with its event: there is no window
//     between writing an event and indexing its ID in which a crash could
//     let a retry write it twice. Nats-Msg-Id de-duplication is not used:
//     it only covers the stream's duplicate window, which the markers make
//     redundant.
//
// When the server refuses a batch, Append looks the batch's markers up (one
// direct get): all of them in this stream is a retry, answered with the
// original result whatever the expected revision; some, or any in another
// stream, is domain.ErrInvalidArgument; none means the stream moved, and the
// expected revision is checked again against its new head. Appends to one
// stream through one Log are serialised and remember the stream's head, so
// an uncontended append is one round trip. Appends to different streams
// that queue while a batch commits are published together as one atomic
// batch (group commit), each with its own expectation and markers; a group
// the server refuses cannot say which member was at fault, so each member
// is then published alone.
//
// AppendMulti (commands.MultiAppender) publishes its parts as such a group
// of its own, alone: the markers of all its events, then each part's
// events expecting its stream's head. The server commits all or nothing,
// so a claim of a unique name and its item's event are written together
// or not at all; a refused call is looked up and checked again as Append
// is.
//
// The other way, one message per batch holding all its events, commits
// faster on a single server but leaves the event-ID index outside the
// commit (a separate key-value bucket written after the append): a crash in
// between, or two racing appends of one ID to two streams, would break the
// port's idempotency promise. Atomic batches cost more: a single server
// stages each batch in a file store of its own before committing it
// (measured here: 9 to 15 ms per batch however small, against 0.6 ms for
// one fsynced message; group commit makes up for it under concurrency),
// while replicated streams stage it in memory.
// MaxBatchEvents (500) follows from the server's default of 1000 messages
// per batch; an event must fit in the server's max_payload less 512 bytes.
//
// # Reads and subscriptions
//
// ReadAll, ReadStream and Head use direct gets (no consumer), which the
// server isolates from batch commits: a read sees all of a batch or none of
// it. ReadStream finds the sequence of its first revision by a binary
// search over sequences (revisions of a subject are consecutive), then
// reads the subject in batches. Subscribe uses an ordered consumer
// (ephemeral, in memory, no acknowledgements) from the sequence after the
// given position, which the client recreates where it stopped after a
// disconnection or a server restart.
//
// # Durability
//
// Append returns once the server has acknowledged the batch. On a
// one-replica stream that is as durable as the server's sync_interval makes
// it: run such a server with sync_interval: always, or use three replicas
// (Options.Replicas).
//
// # Wrapped data keys
//
// KeyStore keeps one record per ref in the key-value bucket
// KeyStoreOptions.Bucket (default KMSBACKUP_KEYS; stream KV_<bucket>, file
// storage, replicas from the options). The KV key of a ref keeps letters,
// digits, '-', '_' and '/' and writes every other byte as '=' and two hex
// digits, so "bkp_01J.../3" is its own key and no ref can make an invalid
// key or a wildcard. Reads are direct gets of the key's last message. The
// master-key check lives beside the records under the key "=keycheck",
// which no ref encodes to; CreateKeyCheck uses the bucket's create (a
// write expecting no revision), so of nodes racing to write it one wins.
// AnyWrapped reads the bucket's stream by subject from its start.
//
// Deleting a record must crypto-shred (every value sealed under its data
// keys becomes unreadable), so it must leave no copy of the record on the
// server, as far as JetStream allows. A purge, a KV delete and a revision
// dropped by the history limit only remove messages from the stream's
// index: their bytes stay in the file store's message block until the
// server compacts the block (when less than half of it is live, never for
// the block being written) or removes it. What does overwrite a message in
// its block is a secure delete (JetStream's message delete with erasure),
// which a bucket made by `nats kv add` denies. So the key bucket differs
// from such a bucket in two settings: message deletes are allowed (a bucket
// that denies them is refused with domain.ErrFailedPrecondition, as the
// server cannot lift that setting), and it keeps up to 8 revisions per key
// rather than 1, because the server drops a revision beyond the limit
// without erasing it. The store itself keeps one: PutWrapped erases the
// older revisions once the new one is acknowledged, and DeleteWrapped
// erases every revision, then purges the key's subject, leaving no message
// and no purge marker: the key's KV history is empty.
//
// Limits of that erasure, none of which the store can lift: with server
// encryption at rest the server does not overwrite (the bytes are
// ciphertext under the server's key); on replicated buckets the Raft log
// of each replica holds the write until it is compacted; a copy already
// made (a backup of the server's store directory, a mirror or source
// stream, a disk snapshot) keeps the record; and the file system may keep
// old blocks on its free list or in its journal. The record is wrapped
// under the master key in any case.
//
// # Backup blobs
//
// Blobs keeps blob (ref, name) as the object esc(ref) "/" esc(name) of the
// object store bucket BlobsOptions.Bucket (default KMSBACKUP_BLOBS; stream
// OBJ_<bucket>), where esc writes '%', '/', control bytes and bytes that
// are not UTF-8 as '%' and two hex digits. The first '/' ends the ref, so
// the objects of a ref are exactly those whose names start with its
// prefix: "bkp_X%2F1/" is not a prefix of "bkp_X%2F10/...". Objects use
// the object store's own format (a JSON meta on $O.<bucket>.M.<base64 of
// the name>, chunks of 128 KiB on $O.<bucket>.C.<NUID>, a SHA-256 digest),
// so NATS tools can list and read them, and GetBlob reads objects the
// tools wrote. Refs, names and sizes have pebblestore's limits (256 and
// 1024 bytes, no NUL, 1 GiB), plus one of this layout: a name with many
// bytes to escape may make the meta subject too long (over 3000 bytes) and
// is refused.
//
// PutBlob writes its chunks under a fresh NUID, then publishes the meta on
// condition that the meta subject still ends where it read it (empty, or a
// deleted object's marker): of racing puts of one blob, on any nodes,
// exactly one publishes, and the others compare its digest with theirs
// (equal is success, other is domain.ErrAlreadyExists) and purge their
// chunks. The library's Put, which overwrites, would let two nodes both
// succeed with different bytes. GetBlob reads the meta, then the chunks in
// batched direct gets (no consumer), and returns only bytes whose length,
// chunk count and SHA-256 match the meta; anything else is
// domain.ErrCorrupt. OpenBlob reads the same way about 1 MiB of chunks at
// a time as its reader is consumed, hashing as it goes. DeleteBlob removes
// one object as DestroyBlobs removes each of a ref's.
//
// One bucket holds every ref, rather than a bucket per ref: a stream per
// backup generation would multiply streams (each a Raft group when
// replicated) and the requests to create them, while the object store
// cannot filter a ref's objects by subject (the meta token is the whole
// name in base64). So DestroyBlobs lists the bucket's meta subjects (one
// stream-info request, whose size grows with the number of objects in the
// bucket; destruction is rare) and, for each object of the ref, marks its
// meta deleted (readers see domain.ErrNotFound from then on), purges its
// chunks, and purges its meta up to the marker; a call cut short leaves the
// marker, which the next call finds and finishes. Purged chunks stay in
// their blocks until the server compacts them (see above): the blobs are
// ciphertext under the ref's data key, and erasing that key in the
// KeyStore is what shreds them. Chunks of a put that crashed before its
// meta belong to no object, and DestroyBlobs cannot find them.
package natsjs
