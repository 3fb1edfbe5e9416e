// Package backupfile is the backup data file format of docs/backup-file.md:
// it implements commands.BackupFiles, writing and reading a versioned header
// authenticated with HMAC-SHA256, then a payload of length-prefixed records
// cut into 64 KiB chunks, each sealed with AES-256-GCM under a counter and a
// last-chunk flag (age's STREAM construction), all under keys derived with
// HKDF from a one-time 256-bit data key. A reader authenticates every chunk
// before returning a byte of it and keeps at most one chunk and one record in
// memory. It never keeps or logs the data key, never puts a key or a record's
// content in an error, and answers every integrity failure, whatever it was,
// with the one domain.BadBackupFile error, so that errors are no oracle.
package backupfile
