// Package e2e holds end-to-end tests that build the real kmsbackup binary,
// start a real server on a free port with a temporary data directory, and
// drive it through the command line and the HTTP API as a user would.
package e2e
