// Package httpapi is the JSON API of kmsbackup under /v1/ (plus /livez,
// /readyz, /metrics and the OpenAPI document), and the typed Go client the
// command line uses. It translates HTTP requests into use-case calls and
// domain errors into {"error":{"code","message"}} bodies through one table;
// long operations (restores, dev clock advances) stream their progress as
// NDJSON when asked (ndjson.go).
// It holds no business rules, and never writes secret values, key material
// or tokens to logs or error messages.
package httpapi
