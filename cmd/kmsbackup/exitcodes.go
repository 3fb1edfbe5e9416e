package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Exit codes of the command line. Scripts depend on them: a number never
// changes meaning, new classes get new numbers.
const (
	exitOK           = 0 // success
	exitInternal     = 1 // internal or unexpected error; also an interrupted command
	exitUsage        = 2 // usage error or invalid argument
	exitNotFound     = 3 // not found
	exitConflict     = 4 // already exists, or lost a concurrent update
	exitQuota        = 5 // quota exceeded
	exitPrecondition = 6 // failed precondition
	exitAuth         = 7 // unauthenticated or permission denied
	exitUnavailable  = 8 // unavailable: the server cannot be reached or cannot serve now
	exitCorrupt      = 9 // corrupt data

	// Start failures of `kmsbackup server`: the data directory is left as
	// it was.
	exitDamaged        = 10 // a file of the data directory is damaged
	exitWrongMasterKey = 11 // the master key is not the one the data was written with
	exitLogBehind      = 12 // acknowledged events are missing from the event log
)

// exitCodes is the one table from the domain's error classes (the sentinel
// domain.Kind finds in an error, including one carried by an
// *httpapi.APIError) to exit codes. An error of no class exits with
// exitInternal; a usage error (bad flags or arguments, found before any
// request) with exitUsage.
var exitCodes = map[error]int{
	domain.ErrInvalidArgument:       exitUsage,
	domain.ErrNotFound:              exitNotFound,
	domain.ErrAlreadyExists:         exitConflict,
	domain.ErrWrongExpectedRevision: exitConflict,
	domain.ErrQuotaExceeded:         exitQuota,
	domain.ErrFailedPrecondition:    exitPrecondition,
	domain.ErrUnauthenticated:       exitAuth,
	domain.ErrPermissionDenied:      exitAuth,
	domain.ErrTooManyRequests:       exitAuth,
	domain.ErrUnavailable:           exitUnavailable,
	domain.ErrCorrupt:               exitCorrupt,
}

// exitMeanings says what each exit code means; the root command's help
// prints it.
var exitMeanings = map[int]string{
	exitOK:           "success",
	exitInternal:     "internal or unexpected error (also: interrupted)",
	exitUsage:        "usage error or invalid argument",
	exitNotFound:     "not found",
	exitConflict:     "already exists, or a concurrent update won (retry)",
	exitQuota:        "quota exceeded",
	exitPrecondition: "failed precondition (e.g. a released instance, a deleted key, a restore plan with findings)",
	exitAuth:         "unauthenticated or permission denied (check --token / KMSBACKUP_TOKEN; also: too many failed authentications from this address, wait and retry)",
	exitUnavailable:  "unavailable: the server is not reachable or cannot serve now",
	exitCorrupt:      "corrupt data (also: verify's findings, a restore that does not validate)",

	exitDamaged:        "server refused to start: a file of the data directory is damaged (the message names it); restore the directory from a copy. Also: the server stopped on damage while running",
	exitWrongMasterKey: "server refused to start: the master key is not the one the data was written with",
	exitLogBehind:      "server refused to start: acknowledged events are missing from the event log (the message lists them); restore the directory from a copy, or see server --accept-lost-log-positions",
}

// startFailure is a refused start of the server, with its own exit code
// (exitDamaged, exitWrongMasterKey, exitLogBehind).
type startFailure struct {
	code int
	err  error
}

func (e *startFailure) Error() string { return e.err.Error() }
func (e *startFailure) Unwrap() error { return e.err }

// fatalExitCode is the exit code of a store's fatal error while running
// (pebblestore.Options.Fatal): damage, or a store that cannot go on.
func fatalExitCode(err error) int {
	if domain.IsCorruption(err) {
		return exitDamaged
	}
	return exitUnavailable
}

// usageError is a mistake in the command line itself: an unknown flag or
// command, a missing or malformed flag or argument. It is found before any
// request is sent, exits with exitUsage and prints the command's usage.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef builds a usageError. Never pass it a secret value or plaintext.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// exitCode maps err to the process exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	var sf *startFailure
	if errors.As(err, &sf) {
		return sf.code
	}
	if code, ok := exitCodes[domain.Kind(err)]; ok {
		return code
	}
	return exitInternal
}

// errorMessage is what the user reads after "kmsbackup: ".
func errorMessage(err error) string {
	if errors.Is(err, context.Canceled) && domain.Kind(err) == nil {
		return "interrupted"
	}
	return err.Error()
}

// exitCodeHelp renders exitMeanings for the root command's long help.
func exitCodeHelp() string {
	codes := make([]int, 0, len(exitMeanings))
	for c := range exitMeanings {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var b strings.Builder
	b.WriteString("Exit codes:\n")
	for _, c := range codes {
		fmt.Fprintf(&b, "  %2d  %s\n", c, exitMeanings[c])
	}
	return b.String()
}
