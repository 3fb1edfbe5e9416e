// Package ids draws ULIDs from crypto randomness for the IDSource port. It
// never uses ulid.Monotonic, which is not safe for concurrent use.
package ids
