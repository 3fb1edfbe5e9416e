package httpapi

import _ "embed"

// OpenAPI is the API's OpenAPI 3.1 document, served at /v1/openapi.json.
// It is kept by hand beside the routes; a test checks that both list the
// same operations.
//
//go:embed openapi.json
var OpenAPI []byte
