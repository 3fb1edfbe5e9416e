package domain_test

import (
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// TestViewableWorkedExample is SPEC.md section 5's example: enabled on
// 2023-05-01 with 10 viewable days, on 2023-05-20 the 5th is hidden;
// extending to 16 days reveals it; nothing before 05-01 ever appears.
func TestViewableWorkedExample(t *testing.T) {
	enabled, today, d := domain.Day("2023-05-01"), domain.Day("2023-05-20"), domain.Day("2023-05-05")
	if today.Sub(d) != 15 {
		t.Fatalf("20 - 5 = %d", today.Sub(d))
	}
	if domain.Viewable(enabled, d, today, 10) {
		t.Fatal("2023-05-05 is viewable with 10 days on 2023-05-20")
	}
	if !domain.Viewable(enabled, d, today, 16) {
		t.Fatal("2023-05-05 is not viewable with 16 days")
	}
	for _, days := range []int{10, 16, 600} {
		if domain.Viewable(enabled, "2023-04-30", today, days) {
			t.Fatalf("a day before enabling is viewable with %d days", days)
		}
	}
	if domain.Viewable(enabled, "2023-05-21", today, 600) {
		t.Fatal("a future day is viewable")
	}
	if !domain.Viewable(enabled, today, today, 7) || !domain.Viewable(enabled, "2023-05-14", today, 7) || domain.Viewable(enabled, "2023-05-13", today, 7) {
		t.Fatal("7-day window is wrong")
	}
}

func TestDays(t *testing.T) {
	shanghai := time.FixedZone("UTC+8", 8*3600)
	at := time.Date(2023, 5, 31, 20, 0, 0, 0, time.UTC) // 04:00 on June 1st in UTC+8
	if got := domain.DayOf(at, shanghai); got != "2023-06-01" {
		t.Fatalf("DayOf = %s", got)
	}
	if got := domain.DayOf(at, time.UTC); got != "2023-05-31" {
		t.Fatalf("DayOf UTC = %s", got)
	}
	if got := domain.Day("2023-05-31").Next(); got != "2023-06-01" {
		t.Fatalf("Next = %s", got)
	}
	if got := domain.Day("2024-03-01").Sub("2024-02-28"); got != 2 {
		t.Fatalf("leap Sub = %d", got)
	}
	if got := domain.Day("2023-06-01").Start(shanghai); !got.Equal(time.Date(2023, 5, 31, 16, 0, 0, 0, time.UTC)) {
		t.Fatalf("Start = %s", got)
	}
	for _, bad := range []string{"", "2023-5-1", "2023-02-30", "yesterday"} {
		if _, err := domain.ParseDay(bad); err == nil {
			t.Errorf("ParseDay(%q) accepted", bad)
		}
	}
}

// TestViewableWindowAgreesWithViewable checks the window against the rule
// day by day, around the worked example.
func TestViewableWindowAgreesWithViewable(t *testing.T) {
	enabled := domain.Day("2023-05-01")
	for _, today := range []domain.Day{"2023-04-30", "2023-05-01", "2023-05-05", "2023-05-20"} {
		for _, days := range []int{0, 1, 7, 10, 16, 600} {
			first, last, ok := domain.ViewableWindow(enabled, today, days)
			for d := domain.Day("2023-04-20"); d <= "2023-05-25"; d = d.AddDays(1) {
				in := ok && first <= d && d <= last
				if want := domain.Viewable(enabled, d, today, days); in != want {
					t.Errorf("today %s, %d days: day %s in window [%s, %s] = %v, Viewable = %v", today, days, d, first, last, in, want)
				}
			}
		}
	}
	if _, _, ok := domain.ViewableWindow("", "2023-05-20", 7); ok {
		t.Error("an instance never enabled has a window")
	}
}
