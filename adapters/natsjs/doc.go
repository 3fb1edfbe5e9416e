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
//   - for each event, on <prefix>.id.<event ID>, an event-ID marker
//     (written with the event in one atomic batch) or an event-ID claim
//     (written just before the event by a single-event append; see below).
//
// An event's position is the JetStream sequence of its message, and its
// revision (0-based in its stream) is stored in the message with every
// other envelope field in a compact versioned binary payload (codec.go).
// Positions strictly increase but are not contiguous: markers and claims
// take sequences too.
//
// # What an append promises, and how
//
// Three promises, whatever the path: optimistic concurrency per stream
// (an append lands only if the stream still ends where expected says, and
// of racing appends at most one takes each revision); an event ID is
// written once in the whole log, forever (a retry of an acknowledged
// append, even long after, writes nothing and returns the original
// result; the ID in another stream is refused); an append of several
// events is atomic (all of them, at consecutive revisions, or none).
// Nats-Msg-Id de-duplication is not used: it only covers the stream's
// duplicate window.
//
// Each promise is a condition the server checks on a write: every event
// message expects its stream's subject to end at the sequence of the
// stream's last event (Nats-Expected-Last-Subject-Sequence; 0 for a new
// stream), and every marker or claim expects its ID's subject to be
// empty, or to end at the one claim it replaces. One message carries one
// such condition, so an append takes two conditioned writes, made atomic
// in one of two ways:
//
// Atomic batches (several events, or any append on a replicated stream):
// Append publishes one JetStream atomic batch (nats-server 2.12 or later),
// first the markers, then the events, the first of them expecting the
// stream's end. The server commits all of it or none, with consecutive
// sequences, so a batch is atomic, its positions follow from the sequence
// the server acknowledges, and the marker that indexes each ID is
// committed with its event: no crash can separate them.
//
// Claims (one event on a one-replica stream): a one-replica server stages
// every atomic batch in a file store of its own before committing it
// (several fsyncs, directories made and removed: about 5 ms here however
// small the batch, against 0.5 to 0.7 ms for one fsynced message), while
// a replicated stream stages it in memory, where a batch of 2 costs about
// what one replicated message does (BenchmarkPublishShapes). So there, an
// append of one event is two plain messages, one after the other: a claim
// of the ID ("stream S, revision r, after sequence q", expecting the ID's
// subject empty or ending at an orphan claim), then the event (expecting
// S to end at q). The event is in the log if and only if the first event
// of S after q carries the ID, which the claim tells where to look for.
// A claim whose event never came (the appender stopped between the two,
// or lost the race for revision r) is an orphan once another event takes
// that place, for good; it is pending while nothing does.
//
// Why the three promises hold with claims: concurrency is the event's own
// condition, as in a batch; atomicity concerns one event only. For the
// ID: every write of an event with ID X, by either path, is made under
// the last message of X's subject, a claim of X or a marker committed
// with the event, and such a message is only written on condition that
// the subject is empty, or ends at an orphan claim (whose event can never
// come), or at a pending claim while the write itself expects S to end
// exactly at that claim's place (so that it fills the place or fails). So
// at most one claim of X can ever still lead to an event, at one place of
// one stream, and X lands at most once. A claim or marker of X for
// another stream refuses X in this one (domain.ErrInvalidArgument), even
// an orphan claim: X belongs to that stream's append, whose caller was
// told its outcome is unknown. What claims cost: two fsynced round trips
// rather than one batch, an orphan claim left in the log per lost race,
// and Head reading a little further back while a claim is the log's last
// message. claim.go has the code; claim_test.go plays the appender that
// stops between claim and event, the one that comes back late, and many
// appenders of one ID on both paths.
//
// When the server refuses a write, Append looks the batch's IDs up (one
// direct get for the markers and claims, and for a claim one more for the
// place it names): all of them in this stream is a retry, answered with
// the original result whatever the expected revision; some, or any in
// another stream, is domain.ErrInvalidArgument; none means the stream
// moved, and the expected revision is checked again against its new head.
// A lost race is JetStream error 10071, or 10164 on a replicated stream
// when another write of the subject is still in flight (then Append asks
// again after a pause); both end as domain.ErrWrongExpectedRevision when
// the expectation no longer holds. Appends to one stream through one Log
// are serialised and remember the stream's head, so an uncontended append
// is one round trip (two with a claim). Batch appends to different
// streams that queue while a batch commits are published together as one
// atomic batch (group commit), each with its own expectation and markers;
// a group the server refuses cannot say which member was at fault, so
// each member is then published alone.
//
// AppendMulti (commands.MultiAppender) publishes its parts as such a group
// of its own, alone, on every stream whatever its replicas (atomicity
// across streams needs one atomic write): the markers of all its events,
// then each part's events expecting its stream's head. The server commits
// all or nothing, so the claim of a unique name (a NameClaimed event) and
// its item's event are written together or not at all; a refused call is
// looked up and checked again as Append is, and an event-ID claim a part
// must replace is handled as Append does.
//
// The other way, one message per batch holding all its events, would
// leave the event-ID index outside the commit (a separate key-value bucket
// written after the append): a crash in between, or two racing appends of
// one ID to two streams, would break the ID promise.
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
// disconnection or a server restart. The client makes one attempt to
// recreate it under the name it gives the new incarnation; when that
// fails, the subscription starts a new ordered consumer, under a new name,
// where it stopped. (Left to retry, the client keeps the name, and a
// consumer the cluster placed on a server that had just died, before it
// noticed, waits for that server to come back: the subscription, and
// every projection of a node, with it.)
//
// Any replica answers a direct get, from what it has applied, and a
// follower applies a commit a moment after the leader acknowledged it (a
// client connected to a follower reads from it). So on a replicated
// stream the reads that must see every acknowledged write ask the
// stream's leader (JetStream's message get API, which only the leader
// answers): the last message of a subject (the stream's head, Head, the
// blob store's metas), a message by sequence, the binary search. Reads of
// ranges stay direct gets, from whichever replica answers, and a range
// that ends early is completed from the leader: ReadStream knows from the
// leader's head which revisions it must find; ReadAll asks the leader
// whether anything follows before it says the log ends there; a blob's
// meta says how many chunks there are. So a Log, a KeyStore or a Blobs
// reads its own writes and every write acknowledged before the read
// began, through any server. An append is the exception that needs no
// leader: it reads a stream's head it does not know from any replica, as
// the server checks its expectation anyway, and asks the leader only
// before it reports a wrong expected revision, or after a refused write.
//
// While a stream elects a leader (its leader stopped or died: after a
// kill its followers wait 4 to 9 s before one of them stands, and a first
// vote can fail), no server answers what only a leader answers, and a
// request sent before the new leader exists is never answered at all. So
// the reads from a leader (the key store's gets included) and the appends
// no server answered are asked again for up to 20 seconds
// (electionWait), each read attempt bounded short at first (250 ms,
// doubling up to 5 s), so that the one sent after the election is
// answered at once.
//
// # Durability
//
// Append returns once the server has acknowledged the write. On a
// one-replica stream that is as durable as the server's sync_interval
// makes it: run such a server with sync_interval: always. With three
// replicas (Options.Replicas, KeyStoreOptions.Replicas,
// BlobsOptions.Replicas) a write is acknowledged once two replicas hold
// it, so one server can stop, or lose its disk, without losing anything
// acknowledged, and the log goes on with the two others
// (TestClusterServerDown).
//
// # Wrapped data keys
//
// KeyStore keeps one record per ref in the key-value bucket
// KeyStoreOptions.Bucket (default KMSBACKUP_KEYS; stream KV_<bucket>, file
// storage, replicas from the options). The KV key of a ref keeps letters,
// digits, '-', '_' and '/' and writes every other byte as '=' and two hex
// digits, so "bkp_01J.../3" is its own key and no ref can make an invalid
// key or a wildcard. Reads are direct gets of the key's last message on a
// one-replica bucket; a replicated bucket denies direct gets, so that the
// library reads from its leader (see Reads). The
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
