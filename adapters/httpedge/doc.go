// Package httpedge is what stands between the network and kmsbackup's HTTP
// handlers (the JSON API and the web console): deadlines for request
// bodies that still let a large upload stream, a cap on the requests that
// have not authenticated, a per-client limit of failed authentications
// (golang.org/x/time/rate, a bounded table of limiters), and the client's
// address and protocol, taken from X-Forwarded-For and X-Forwarded-Proto
// only when the peer is a trusted proxy. It knows no tokens and no
// accounts: the handlers authenticate and tell it the outcome. It never
// logs request bodies, headers or tokens.
package httpedge
