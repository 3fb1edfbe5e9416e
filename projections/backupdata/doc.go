// Package backupdata is the read model of what each backup generation
// holds. From a backup instance's events, and for each checkpoint the
// events of its slice (decoded by the caller, key material already resealed
// under the backup's data key), it keeps a temporal item table (one row per
// item incarnation and change, valid over a range of checkpoints, so a full
// backup stores only what changed and the state at any checkpoint is one
// scan), every item version once, the day index behind the day tabs of the
// console, checkpoint summaries with an incrementally maintained state
// digest, and per-day records. Queries read day tabs, states at a
// checkpoint, differences between days and the versions a restore needs.
//
// It is a pure function of the events it is given over a projections.Txn:
// it never decrypts, never reads a clock, the log or a blob, never logs,
// and never returns key material or secret values from a listing (only
// Versions, meant for restore, returns sealed material and ciphertexts).
package backupdata
