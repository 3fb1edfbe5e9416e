// Package publicevent is the public, versioned JSON form of kmsbackup's
// events (schema "kmsbackup.event/v1", documented in docs/events.md): what
// is published on the event stream and what `kmsbackup events tail` prints.
// FromEvent maps an event of the log to it; Parse reads it back, for
// consumers; ToEvent maps the events of a KMS instance's stream back to
// the log's form, for ingesting those of an external KMS. The package is
// pure: no I/O, clock, randomness or logging.
//
// It never carries a secret in the clear: key material appears only sealed
// under its KMS instance's data key, secret values only as KMS ciphertext
// (both base64), and an account's token hash not at all. Changing the JSON
// of v1 in a way a consumer could notice, other than adding a field or an
// event type, needs a new schema ID (see docs/events.md).
package publicevent
