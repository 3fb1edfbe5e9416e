package domain

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// Page tokens. A listing hands out the position of its next page as an
// opaque token and takes it back unchanged: base64url of a version byte,
// the position, and a 12-byte HMAC-SHA256 tag over the position and the
// listing that issued it (its kind and everything that selects its items:
// the account, the instance, the backup, the day, the tab, the filters).
// A token another listing issued, one cut or edited, or any other string
// is refused. The tag is a checksum under a key everyone may know, not a
// secret: a crafted token only ever reaches a position of the same
// listing, which shows nothing the caller could not list anyway.

const (
	pageTokenVersion = 1
	pageTagSize      = 12
	// maxPageToken bounds a token: positions are IDs and names of at most
	// a few hundred bytes.
	maxPageToken = 1024
)

var pageTokenKey = []byte("kmsbackup page token v1")

func pageTag(scope, cursor string) []byte {
	m := hmac.New(sha256.New, pageTokenKey)
	m.Write([]byte(scope))
	m.Write([]byte{0})
	m.Write([]byte(cursor))
	return m.Sum(nil)[:pageTagSize]
}

// PageToken is the token of a listing's next page: cursor (the listing's
// own position, empty after the last page) bound to scope, which names
// the listing and what selects its items. An empty cursor gives "".
func PageToken(scope, cursor string) string {
	if cursor == "" {
		return ""
	}
	b := make([]byte, 0, 1+len(cursor)+pageTagSize)
	b = append(b, pageTokenVersion)
	b = append(b, cursor...)
	b = append(b, pageTag(scope, cursor)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// PageCursor is the position a page token holds, when the listing of
// scope issued it; "" for an empty token (the first page). Errors:
// ErrInvalidArgument for every other token, which the message never
// repeats.
func PageCursor(scope, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	var b []byte
	var err error
	if len(token) <= maxPageToken {
		b, err = base64.RawURLEncoding.DecodeString(token)
	}
	if len(token) > maxPageToken || err != nil || len(b) < 2+pageTagSize || b[0] != pageTokenVersion {
		return "", BadPageToken()
	}
	cursor, tag := b[1:len(b)-pageTagSize], b[len(b)-pageTagSize:]
	if !hmac.Equal(tag, pageTag(scope, string(cursor))) {
		return "", BadPageToken()
	}
	return string(cursor), nil
}

// BadPageToken is the error of a page token the listing did not issue.
func BadPageToken() error {
	return Errorf(ErrInvalidArgument, "read page token", "",
		"pass the next_page_token of the previous page unchanged, with the same filters, or leave it out for the first page",
		"page_token is not one this listing issued")
}

// PageScope joins the parts that select a listing's items into its scope.
func PageScope(parts ...string) string {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, 0)
	}
	return string(b)
}
