package httpapi

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"testing"
)

// operationID is the form of an operationId: lower camel case, which
// client generators turn into a method name (createKey: CreateKey).
var operationID = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// TestOpenAPIOperationIDs: every operation has an operationId, unique in
// the document, so that a client generated from it has a method of a
// stable, readable name per operation (not one made up from the path).
func TestOpenAPIOperationIDs(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			where := strings.ToUpper(method) + " " + path
			switch id := op.OperationID; {
			case id == "":
				t.Errorf("%s has no operationId", where)
			case !operationID.MatchString(id):
				t.Errorf("%s: operationId %q is not lower camel case", where, id)
			case seen[id] != "":
				t.Errorf("%s: operationId %q is %s's already", where, id, seen[id])
			case doc.Components.Schemas[strings.ToUpper(id[:1])+id[1:]+"Response"] != nil:
				// Generators name an operation's typed response so
				// (oapi-codegen: EncryptResponse for encrypt).
				t.Errorf("%s: operationId %q makes a response type named like schema %sResponse", where, id, strings.ToUpper(id[:1])+id[1:])
			default:
				seen[id] = where
			}
		}
	}
}

// TestOpenAPILicence: the document claims the licence the repository has,
// and none when it has none (OpenAPI does not require one): the
// repository's LICENSE is Apache-2.0.
func TestOpenAPILicence(t *testing.T) {
	var doc struct {
		Info struct {
			License *struct {
				Name       string `json:"name"`
				Identifier string `json:"identifier"`
				URL        string `json:"url"`
			} `json:"license"`
		} `json:"info"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var licence []byte
	for _, name := range []string{"LICENSE", "LICENSE.md", "LICENSE.txt", "COPYING"} {
		b, err := os.ReadFile("../../" + name)
		if err == nil {
			licence = b
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	switch l := doc.Info.License; {
	case licence == nil && l != nil:
		t.Errorf("info.license claims %q, but the repository has no licence file", l.Name)
	case licence != nil && (l == nil || l.Name == "" || l.Identifier == "" && l.URL == ""):
		t.Errorf("the repository has a licence file; info.license must name it (name, and an SPDX identifier or a URL)")
	case licence != nil && l.Identifier != "" && !strings.Contains(string(licence), licenceWords[l.Identifier]):
		t.Errorf("info.license says %s, which the licence file does not look like", l.Identifier)
	}
}

// licenceWords are words each licence's text holds, by SPDX identifier.
var licenceWords = map[string]string{
	"Apache-2.0":   "Apache License",
	"MIT":          "Permission is hereby granted, free of charge",
	"BSD-3-Clause": "Redistribution and use in source and binary forms",
	"MPL-2.0":      "Mozilla Public License",
	"AGPL-3.0":     "GNU AFFERO GENERAL PUBLIC LICENSE",
	"GPL-3.0":      "GNU GENERAL PUBLIC LICENSE",
}
