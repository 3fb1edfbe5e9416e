// Package rawconn gives tests raw TCP connections to an HTTP server, to
// send a request slowly or in part and see how the server ends it (an
// answer or a close), with a bound on every wait. It is for tests only:
// production code never imports it.
package rawconn
