package domain

import (
	"fmt"
	"time"
)

// Day is a calendar date, "YYYY-MM-DD", in some time zone (a backup
// instance's). Days compare as strings.
type Day string

const dayLayout = "2006-01-02"

// ParseDay validates a day.
func ParseDay(s string) (Day, error) {
	t, err := time.Parse(dayLayout, s)
	if err != nil || t.Format(dayLayout) != s {
		return "", Invalid("parse day", "day %s must be a date as YYYY-MM-DD", Quote(s))
	}
	return Day(s), nil
}

// DayOf is the calendar day of instant t in loc.
func DayOf(t time.Time, loc *time.Location) Day { return Day(t.In(loc).Format(dayLayout)) }

func (d Day) date() time.Time {
	t, err := time.Parse(dayLayout, string(d))
	if err != nil {
		panic(fmt.Sprintf("domain: invalid day %q", string(d))) // days are validated where they enter
	}
	return t
}

// Start is the first instant of the day in loc (00:00, or the first instant
// after a daylight-saving gap at midnight).
func (d Day) Start(loc *time.Location) time.Time {
	t := d.date()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
}

// Next is the following day.
func (d Day) Next() Day { return Day(d.date().AddDate(0, 0, 1).Format(dayLayout)) }

// Sub is the number of days from e to d (d - e).
func (d Day) Sub(e Day) int {
	return int(d.date().Sub(e.date()).Hours()+12) / 24
}

// Viewable says whether day d of a backup instance can be seen, restored or
// downloaded on day today: on or after the day it was enabled, not in the
// future, and fewer than viewableDays days ago.
func Viewable(enabled, d, today Day, viewableDays int) bool {
	return enabled <= d && d <= today && today.Sub(d) < viewableDays
}

// AddDays is the day n days after d (before, for negative n).
func (d Day) AddDays(n int) Day { return Day(d.date().AddDate(0, 0, n).Format(dayLayout)) }

// ViewableWindow is the range of days viewable on day today for an instance
// enabled on day enabled with viewableDays days: from first to last
// inclusive. ok is false when no day is viewable (nothing enabled yet, or
// today before the enabled day).
func ViewableWindow(enabled, today Day, viewableDays int) (first, last Day, ok bool) {
	if enabled == "" || today < enabled || viewableDays < 1 {
		return "", "", false
	}
	first = today.AddDays(1 - viewableDays)
	if first < enabled {
		first = enabled
	}
	return first, today, true
}
