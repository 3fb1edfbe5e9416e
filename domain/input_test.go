package domain_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kmsbackup/kmsbackup/domain"
)

func TestQuoteIsShort(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", `""`},
		{"cn-hangzhou", `"cn-hangzhou"`},
		{"a\u202eb\x1b", `"a\u202eb\x1b"`},
	} {
		if got := domain.Quote(c.in); got != c.want {
			t.Errorf("Quote(%q) = %s, want %s", c.in, got, c.want)
		}
	}
	for _, in := range []string{strings.Repeat("X", 900<<10), strings.Repeat("界", 500), strings.Repeat("\x1b", 300), strings.Repeat("\U0010FFFF", 80),
		strings.Repeat("a", 99) + "\xff\xfe"} {
		got := domain.Quote(in)
		if len(got) > domain.MaxShown+30 || !utf8.ValidString(got) || !strings.HasPrefix(got, `"`) || !strings.Contains(got, " bytes)") {
			t.Errorf("Quote of %d bytes = %s (%d bytes)", len(in), got, len(got))
		}
	}
}

func TestCleanName(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"prod", "prod", true},
		{"  prod  ", "prod", true},
		{"prod, 3 May", "prod, 3 May", true},
		{"生产", "生产", true},
		{strings.Repeat("a", 64), strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), "", false},
		{"", "", false},
		{" \t\n ", "", false},
		{"\u00a0", "", false},
		{"a\u202eb", "", false},
		{"\u2066x", "", false},
		{"x\u200f", "", false},
		{"a\x00b", "", false},
		{"a\nb", "", false},
		{"a\tb", "", false},
		{"a\x7fb", "", false},
		{"a\u0085b", "", false},
		{"a\u2028b", "", false},
		{"\xff", "", false},
	} {
		got, err := domain.CleanAlias("alias", c.in)
		if c.ok != (err == nil) || got != c.want {
			t.Errorf("CleanAlias(%q) = %q, %v; want %q ok=%v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && (!errors.Is(err, domain.ErrInvalidArgument) || !strings.Contains(err.Error(), "alias")) {
			t.Errorf("CleanAlias(%q): %v, want an invalid argument naming the alias", c.in, err)
		}
	}
}

func TestCleanDescription(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"payments", "payments", true},
		{"  line one\nline\ttwo\n", "line one\nline\ttwo", true},
		{"支付", "支付", true},
		{strings.Repeat("d", 1024), strings.Repeat("d", 1024), true},
		{strings.Repeat("d", 1025), "", false},
		{"nul\x00", "", false},
		{"esc\x1b[2J", "", false},
		{"cr\rlf", "", false},
		{"bidi\u202e", "", false},
		{"\xc3", "", false},
	} {
		got, err := domain.CleanDescription(c.in)
		if c.ok != (err == nil) || got != c.want {
			t.Errorf("CleanDescription(%q) = %q, %v; want %q ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestValidateTimeZone(t *testing.T) {
	for _, ok := range []string{"UTC", "Asia/Shanghai", "America/Argentina/Buenos_Aires", "Etc/GMT+8", "Etc/GMT-14", "EST5EDT", "America/Port-au-Prince"} {
		if err := domain.ValidateTimeZone(ok); err != nil {
			t.Errorf("ValidateTimeZone(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Local", "localtime", "Factory", "posixrules", "leapseconds", "right/UTC", "posix/Asia/Shanghai",
		"SystemV/EST5", "/etc/passwd", "../etc/passwd", "Asia/../UTC", "Asia//Shanghai", "Asia/Shanghai/", " UTC", "UTC\x00",
		"a/b/c/d", "+08:00", "zone.tab", strings.Repeat("A", 65)} {
		err := domain.ValidateTimeZone(bad)
		if !errors.Is(err, domain.ErrInvalidArgument) || !strings.Contains(err.Error(), "IANA") {
			t.Errorf("ValidateTimeZone(%q) = %v, want an invalid argument naming IANA names", bad, err)
		}
	}
}

func TestParseClockAdvance(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"1s", time.Second}, {"90s", 90 * time.Second}, {"5m", 5 * time.Minute}, {"48h", 48 * time.Hour},
		{"31d", 31 * 24 * time.Hour}, {"400d", 400 * 24 * time.Hour}, {"9600h", 9600 * time.Hour},
	} {
		if got, err := domain.ParseClockAdvance(c.in); err != nil || got != c.want {
			t.Errorf("ParseClockAdvance(%q) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "1h30m", "500ms", "1.5d", "1.5h", "90", "-5m", "0s", "0d", "1d12h", "5 m", " 5m", "5M", "401d",
		"9601h", "1w", "1y", "99999999999999999999s", "5m\n"} {
		_, err := domain.ParseClockAdvance(bad)
		if !errors.Is(err, domain.ErrInvalidArgument) || !strings.Contains(err.Error(), "5m, 48h or 31d") {
			t.Errorf("ParseClockAdvance(%q) = %v, want an invalid argument giving the form", bad, err)
		}
	}
}

func TestPageTokens(t *testing.T) {
	keys := domain.PageScope("keys", "kms_1")
	tok := domain.PageToken(keys, "key_01KQ")
	if domain.PageToken(keys, "") != "" {
		t.Fatal("the last page has a token")
	}
	if c, err := domain.PageCursor(keys, tok); err != nil || c != "key_01KQ" {
		t.Fatalf("own token: %q, %v", c, err)
	}
	if c, err := domain.PageCursor(keys, ""); err != nil || c != "" {
		t.Fatalf("no token: %q, %v", c, err)
	}
	edited := []byte(tok)
	edited[3] ^= 1
	for name, bad := range map[string]string{
		"another listing's":  domain.PageToken(domain.PageScope("secrets", "kms_1"), "key_01KQ"),
		"another instance's": domain.PageToken(domain.PageScope("keys", "kms_2"), "key_01KQ"),
		"a raw cursor":       "key_01KQ",
		"edited":             string(edited),
		"cut":                tok[:len(tok)-2],
		"padded":             tok + "=",
		"not base64":         "!!!",
		"huge":               strings.Repeat("A", 5000),
		"version 0":          "AA" + tok[2:],
	} {
		_, err := domain.PageCursor(keys, bad)
		if !errors.Is(err, domain.ErrInvalidArgument) || !strings.Contains(err.Error(), "page_token") || strings.Contains(err.Error(), bad) {
			t.Errorf("%s token: %v, want an invalid argument that names page_token and not the token", name, err)
		}
	}
	// Scopes are unambiguous: ("ab", "c") is not ("a", "bc").
	if domain.PageScope("ab", "c") == domain.PageScope("a", "bc") {
		t.Fatal("scopes collide")
	}
}

func TestRegionTimeZones(t *testing.T) {
	if z := domain.RegionTimeZone("cn-hangzhou"); z != "Asia/Shanghai" {
		t.Fatalf("cn-hangzhou: %s", z)
	}
	if z := domain.RegionTimeZone("xx-nowhere-1"); z != "UTC" {
		t.Fatalf("an unknown region: %s", z)
	}
	regions := domain.KnownRegions()
	if len(regions) < 20 {
		t.Fatalf("%d known regions", len(regions))
	}
	for _, r := range regions {
		z := domain.RegionTimeZone(r)
		if err := domain.ValidateRegion(r); err != nil {
			t.Errorf("region %s: %v", r, err)
		}
		if err := domain.ValidateTimeZone(z); err != nil {
			t.Errorf("zone of %s: %v", r, err)
		}
		if _, err := time.LoadLocation(z); err != nil {
			t.Errorf("zone %s of %s does not load: %v", z, r, err)
		}
	}
}
