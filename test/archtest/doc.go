// Package archtest enforces kmsbackup's architecture on the real module:
// its test lists every package with `go list -json ./...` and fails, naming
// the package and the import, when a dependency rule of DESIGN.md is broken
// (domain pure and self-contained; projections over domain; commands over
// projections and domain; adapters never importing each other but for the
// code they share in adapters/internal; cmd and test
// imported by nobody else), when domain reads the clock, or when a package
// lacks a one-sentence doc comment in doc.go. It also checks that .gitignore
// covers what the README's tour leaves in a checkout (data directories,
// backup data files and their data keys, the binary). It holds no
// production code and is never imported.
package archtest
