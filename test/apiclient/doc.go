// Package apiclient is a Go client of the kmsbackup HTTP API generated
// from its OpenAPI document (adapters/httpapi/openapi.json, served at
// /v1/openapi.json) by oapi-codegen, a generator not written here: the
// end-to-end tests drive the real server with it (test/e2e
// TestGeneratedClientDrivesTheServer) and check that regenerating it
// from the served document changes nothing, so that the document is
// proven usable by clients of other tools. It holds generated code only
// (client.gen.go, never edited by hand) and production code never
// imports it: the command line uses adapters/httpapi's own client.
package apiclient

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -config oapi-codegen.yaml ../../adapters/httpapi/openapi.json
