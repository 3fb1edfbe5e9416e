// Package e2e holds end-to-end tests that build the real kmsbackup binary,
// start a real server on a free port with a temporary data directory, and
// drive it through the command line and the HTTP API as a user would; the
// README's tours are run as written, with bash (TestReadmeTour). They never
// stand in for the server with a double.
package e2e
