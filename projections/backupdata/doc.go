// Package backupdata is the read model of what each backup generation
// holds, for the lists of a day's data, the differences between days and
// the checkpoints a restore can choose. From a backup instance's events,
// and for each checkpoint the events of its slice (walked part by part by
// the caller, key material already resealed under the backup's data key),
// it keeps a temporal item table (one row per item incarnation and change,
// valid over a range of checkpoints, so that a full backup stores only
// what changed and the state at any checkpoint is one scan), the live
// index, the day index behind the day tabs of the console, checkpoint
// summaries (with their slices' parts) and an incrementally maintained
// state digest, and per-day records.
//
// It holds no version and no key material: restores read a generation's
// slices and bases (commands.DayData.Open). The first version of the read
// model (LegacyName) held every version too; a store drops it once.
//
// It is a pure function of the events it is given over a projections.Txn:
// it never decrypts, never reads a clock, the log or a blob, and never
// logs.
package backupdata
