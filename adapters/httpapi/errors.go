package httpapi

import (
	"errors"
	"net/http"

	"github.com/kmsbackup/kmsbackup/domain"
)

// errorCodes is the one table from domain sentinels to API codes and HTTP
// statuses.
var errorCodes = map[error]struct {
	code   string
	status int
}{
	domain.ErrInvalidArgument:       {"invalid_argument", http.StatusBadRequest},
	domain.ErrUnauthenticated:       {"unauthenticated", http.StatusUnauthorized},
	domain.ErrPermissionDenied:      {"permission_denied", http.StatusForbidden},
	domain.ErrNotFound:              {"not_found", http.StatusNotFound},
	domain.ErrAlreadyExists:         {"already_exists", http.StatusConflict},
	domain.ErrWrongExpectedRevision: {"conflict", http.StatusConflict},
	domain.ErrFailedPrecondition:    {"failed_precondition", http.StatusConflict},
	domain.ErrQuotaExceeded:         {"quota_exceeded", http.StatusUnprocessableEntity},
	domain.ErrCorrupt:               {"corrupt", http.StatusUnprocessableEntity},
	domain.ErrUnavailable:           {"unavailable", http.StatusServiceUnavailable},
	domain.ErrTooManyRequests:       {"too_many_requests", http.StatusTooManyRequests},
}

// errorBody maps an error to its status and body. Errors that wrap no
// sentinel are internal: their text is not shown to the client.
func errorBody(err error) (int, ErrorBody) {
	kind := domain.Kind(err)
	c, ok := errorCodes[kind]
	if !ok {
		return http.StatusInternalServerError, ErrorBody{Error: ErrorDetail{Code: "internal",
			Message: "internal error; the server log has the details"}}
	}
	d := ErrorDetail{Code: c.code, Message: err.Error()}
	var de *domain.Error
	if errors.As(err, &de) && de.Hint != "" {
		d.Hint = de.Hint
		d.Message = de.Op
		if de.Item != "" {
			d.Message += " " + domain.ShownItem(de.Item)
		}
		d.Message += ": " + de.Msg
	}
	return c.status, ErrorBody{Error: d}
}

// statusOf is the status code an error code is answered with (500 for an
// unknown code), for an error that arrives in a stream after the status.
func statusOf(code string) int {
	for _, c := range errorCodes {
		if c.code == code {
			return c.status
		}
	}
	return http.StatusInternalServerError
}
