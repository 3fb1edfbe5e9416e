package domain

import (
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The rules every value from outside obeys, wherever it enters (the API,
// the console, the command line): what names, aliases, descriptions, time
// zones and dev clock advances may hold, and how much of a bad value an
// error shows back.

// MaxShown is about how many characters of a bad value an error repeats.
const MaxShown = 100

// Quote is s as an error message shows it: quoted with Go's escapes (so
// control and bidi characters are visible, never obeyed), cut to at most
// about MaxShown characters, with its size when it was cut.
func Quote(s string) string {
	q := strconv.Quote(s)
	if len(q) <= MaxShown {
		return q
	}
	n := min(len(s), MaxShown)
	for ; n > 0; n-- {
		if (n == len(s) || utf8.RuneStart(s[n])) && len(strconv.Quote(s[:n])) <= MaxShown-2 {
			break
		}
	}
	return strconv.Quote(s[:n]) + "… (" + strconv.Itoa(len(s)) + " bytes)"
}

// isBidi reports the bidirectional formatting characters, which can make
// text display in another order than it is stored (U+061C, U+200E,
// U+200F, U+202A-U+202E, U+2066-U+2069).
func isBidi(r rune) bool {
	return r == 0x061C || r == 0x200E || r == 0x200F || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}

// unprintable reports what no name or description may hold, but for the
// characters allowed passes: control characters (C0, DEL, C1), line and
// paragraph separators, and bidi formatting characters.
func unprintable(r rune, allowed string) bool {
	if strings.ContainsRune(allowed, r) {
		return false
	}
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || isBidi(r)
}

// CleanName is a name or alias as it is kept: s without surrounding white
// space, which must leave 1 to max characters of valid UTF-8 without
// control or bidi characters. what names the field for the message
// ("alias", "upload name").
func CleanName(op, what, s string, max int) (string, error) {
	t := strings.TrimSpace(s)
	form := "1 to " + strconv.Itoa(max) + " characters without control or bidi characters (surrounding spaces are removed)"
	switch {
	case !utf8.ValidString(t):
		return "", Invalid(op, "%s must be valid UTF-8: %s", what, form)
	case t == "":
		return "", Invalid(op, "%s must not be blank: %s", what, form)
	case utf8.RuneCountInString(t) > max:
		return "", Invalid(op, "%s is %d characters long: %s", what, utf8.RuneCountInString(t), form)
	case strings.IndexFunc(t, func(r rune) bool { return unprintable(r, "") }) >= 0:
		return "", Invalid(op, "%s %s holds a control or bidi character: %s", what, Quote(t), form)
	}
	return t, nil
}

// CleanAlias is a backup instance's alias (or an upload's name) as it is
// kept; see CleanName.
func CleanAlias(what, s string) (string, error) {
	return CleanName("validate "+what, what, s, MaxAliasLength)
}

// CleanDescription is a key description as it is kept: s without
// surrounding white space, valid UTF-8 of at most MaxDescription
// characters, with no NUL, no control character but newline and tab, and
// no bidi character. It may be empty.
func CleanDescription(s string) (string, error) {
	const op = "validate description"
	t := strings.TrimSpace(s)
	form := "at most " + strconv.Itoa(MaxDescription) + " characters; newlines and tabs are allowed, other control characters and bidi characters are not"
	switch {
	case !utf8.ValidString(t):
		return "", Invalid(op, "description must be valid UTF-8: %s", form)
	case utf8.RuneCountInString(t) > MaxDescription:
		return "", Invalid(op, "description is %d characters long: %s", utf8.RuneCountInString(t), form)
	case strings.IndexFunc(t, func(r rune) bool { return unprintable(r, "\n\t") }) >= 0:
		return "", Invalid(op, "description %s holds a control or bidi character: %s", Quote(t), form)
	}
	return t, nil
}

// zoneRe is the form of an IANA time zone name: one to three components of
// letters, digits, '_', '+' and '-', each starting with a letter
// ("UTC", "Asia/Shanghai", "America/Argentina/Buenos_Aires", "Etc/GMT+8").
var zoneRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z][A-Za-z0-9_+-]*){0,2}$`)

// notZones are names a zone database or the Go runtime accepts that are
// not IANA time zones: the host's own zone, tzdata's placeholder and rule
// files, and the trees of alternative (leap-second, POSIX) copies.
var notZones = map[string]bool{"Local": true, "localtime": true, "Factory": true, "posixrules": true, "leapseconds": true, "SECURITY": true}

// ValidateTimeZone checks that name has the form of an IANA time zone name
// ("Asia/Shanghai", "UTC"). Whether the zone exists is for the caller to
// check, by loading it.
func ValidateTimeZone(name string) error {
	first, _, _ := strings.Cut(name, "/")
	if len(name) > 64 || !zoneRe.MatchString(name) || notZones[name] || first == "right" || first == "posix" || first == "SystemV" {
		return UnknownTimeZone(name)
	}
	return nil
}

// UnknownTimeZone is the error of a name that is not an IANA time zone.
func UnknownTimeZone(name string) error {
	return Errorf(ErrInvalidArgument, "validate time zone", "", "leave it out for the region's zone",
		"time zone %s is not an IANA time zone name such as Asia/Shanghai, Europe/Berlin or UTC", Quote(name))
}

// MaxClockAdvance bounds one advance of the dev clock.
const MaxClockAdvance = 400 * 24 * time.Hour

// ClockAdvanceForm says what a dev clock advance looks like.
const ClockAdvanceForm = "a whole number and one unit (s, m, h or d), such as 90s, 5m, 48h or 31d"

var advanceRe = regexp.MustCompile(`^([0-9]{1,9})([smhd])$`)

// ParseClockAdvance reads how far to move the dev clock: a whole number of
// seconds, minutes, hours or days, one unit ("90s", "5m", "48h", "31d"),
// positive and at most MaxClockAdvance.
func ParseClockAdvance(s string) (time.Duration, error) {
	const op = "advance clock"
	m := advanceRe.FindStringSubmatch(s)
	if m == nil {
		if s == "" {
			return 0, Invalid(op, "the duration is required: %s", ClockAdvanceForm)
		}
		return 0, Invalid(op, "duration %s must be %s (one unit, whole seconds or more)", Quote(s), ClockAdvanceForm)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
	switch {
	case n == 0:
		return 0, Invalid(op, "duration %s must be positive: the clock never goes back; %s", Quote(s), ClockAdvanceForm)
	case n > int64(MaxClockAdvance/unit):
		return 0, Invalid(op, "duration %s is more than %d days: advance in several steps of %s", Quote(s), int(MaxClockAdvance/(24*time.Hour)), ClockAdvanceForm)
	}
	return time.Duration(n) * unit, nil
}
