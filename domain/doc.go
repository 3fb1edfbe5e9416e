// Package domain is the pure model of kmsbackup: identifiers, accounts, KMS
// instances, keys, secrets and their versions, the events that record every
// change, and the rules those changes must obey (quotas, uniqueness within a
// region, a secret's key being live), including the rules every value from
// outside obeys at every edge (input.go: names, descriptions, time zones,
// dev clock advances, how much of a bad value an error shows), the page
// tokens of listings (pagetoken.go) and the time zone of each region
// (region.go).
//
// It is deterministic: it imports only the standard library, ULID and its own
// wire codec. It never reads a clock, draws randomness, performs I/O or logs.
// Time, identifiers and key material are passed in by the caller; the rules
// return events or errors and never mutate anything outside their receiver.
package domain
