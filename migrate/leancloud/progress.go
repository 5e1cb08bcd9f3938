package leancloud

import (
	"fmt"
	"io"
	"time"
)

// progress writes one status line: rewritten in place on a terminal,
// else a new line every interval (and at the end).
type progress struct {
	w     io.Writer // nil: silent
	tty   bool
	every time.Duration
	now   func() time.Time
	start time.Time
	last  time.Time
	s     *Summary
	phase string
	wrote bool
}

func (p *progress) tick(force bool) {
	if p.w == nil {
		return
	}
	now := p.now()
	if !force && now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	el := now.Sub(p.start)
	rate := 0.0
	if el > 0 {
		rate = float64(p.s.Messages) / el.Seconds()
	}
	s := p.s
	line := fmt.Sprintf("import %s: conversations %d (created %d, existing %d, refused %d, resumed %d)  messages %d (new %d, dup %d)  %.0f msg/s  problems %d  %s",
		p.phase, s.ConvRows, s.Created, s.Existing, s.Refused, s.ResumedConvs, s.Messages, s.MsgsNew, s.MsgsDup, rate, s.ProblemCount,
		el.Truncate(time.Second))
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		p.wrote = true
		return
	}
	fmt.Fprintln(p.w, line)
}

// done ends the in-place line.
func (p *progress) done() {
	p.tick(true)
	if p.tty && p.wrote {
		fmt.Fprintln(p.w)
	}
}
