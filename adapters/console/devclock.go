package console

import (
	"net/http"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// advanceClock moves a --dev manual clock forward, doing the backup work
// that falls due, and returns to the page it was asked from. Outside
// --dev the route answers not found.
func (c *Console) advanceClock(w http.ResponseWriter, r *http.Request, _ commands.Caller) {
	const op = "advance the clock"
	if c.DevClock == nil {
		c.renderError(w, r, domain.Errorf(domain.ErrNotFound, "", r.URL.Path, "start the server with --dev --clock manual", "no such page"))
		return
	}
	by, err := domain.ParseClockAdvance(r.PostFormValue("by"))
	switch {
	case !c.DevClock.Manual():
		err = domain.Errorf(domain.ErrFailedPrecondition, op, "", "start the server with --dev --clock manual", "the clock is the system's")
	case err != nil:
	default:
		_, _, err = c.DevClock.Advance(r.Context(), by)
	}
	if err != nil {
		c.renderError(w, r, err)
		return
	}
	redirect(w, r, localPath(r.PostFormValue("back"), "/backups"))
}
