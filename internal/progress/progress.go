package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// DefaultMinInterval is the shortest time between two redraws of a Bar.
const DefaultMinInterval = 100 * time.Millisecond

// Bar is a one-line progress bar.
type Bar struct {
	// MinInterval is the shortest time between two redraws. Defaults to
	// DefaultMinInterval (set before the first Update).
	MinInterval time.Duration
	// Width is the number of cells of the bar. Defaults to 30.
	Width int

	w     io.Writer
	label string
	unit  string
	now   func() time.Time

	mu       sync.Mutex
	start    time.Time
	last     time.Time
	drawn    bool
	complete bool
	lineLen  int
	finished bool
}

// New returns a bar writing to w whose line starts with label; unit names
// what is counted ("events").
func New(w io.Writer, label, unit string) *Bar {
	return &Bar{w: w, label: label, unit: unit, now: time.Now}
}

// Update reports done of total units. A total of 0 or less draws the count
// without a bar.
func (b *Bar) Update(done, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	now := b.now()
	if b.start.IsZero() {
		b.start = now
	}
	interval := b.MinInterval
	if interval <= 0 {
		interval = DefaultMinInterval
	}
	isComplete := total > 0 && done >= total
	if b.drawn && !(isComplete && !b.complete) && now.Sub(b.last) < interval {
		return
	}
	b.complete = b.complete || isComplete
	b.last, b.drawn = now, true
	b.draw(Line(b.label, b.unit, b.width(), done, total, now.Sub(b.start)))
}

// Finish ends the bar's line. Later Updates draw nothing.
func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	if b.drawn {
		_, _ = io.WriteString(b.w, "\n")
	}
}

func (b *Bar) width() int {
	if b.Width > 0 {
		return b.Width
	}
	return 30
}

// draw redraws the line in place, padding over a longer previous line.
func (b *Bar) draw(line string) {
	pad := ""
	if n := b.lineLen - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	b.lineLen = len(line)
	_, _ = io.WriteString(b.w, "\r"+line+pad)
}

// Line renders one progress line: label, bar, percentage, counts and
// elapsed time, e.g. "rebuild carts [#####.....]  50%  500/1,000 events  1.2s".
func Line(label, unit string, width int, done, total int64, elapsed time.Duration) string {
	var sb strings.Builder
	sb.WriteString(label)
	if total > 0 {
		frac := float64(done) / float64(total)
		frac = min(max(frac, 0), 1)
		filled := int(frac * float64(width))
		fmt.Fprintf(&sb, " [%s%s] %3d%%  %s/%s", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
			int(frac*100), Count(done), Count(total))
	} else {
		fmt.Fprintf(&sb, "  %s", Count(done))
	}
	if unit != "" {
		sb.WriteString(" " + unit)
	}
	fmt.Fprintf(&sb, "  %s", elapsed.Round(100*time.Millisecond))
	return sb.String()
}

// Count formats n with thousands separators: 1234567 → "1,234,567".
func Count(n int64) string {
	if n < 0 {
		return "-" + Count(-n)
	}
	s := fmt.Sprintf("%d", n)
	if len(s) <= 3 {
		return s
	}
	var sb strings.Builder
	head := len(s) % 3
	if head > 0 {
		sb.WriteString(s[:head])
	}
	for i := head; i < len(s); i += 3 {
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(s[i : i+3])
	}
	return sb.String()
}
