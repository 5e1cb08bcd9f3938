// Package gopooltest holds what tests that look for leaked goroutines need
// of package gopool.
package gopooltest

import "go.uber.org/goleak"

// IgnoreWorkers is a goleak option that passes gopool's parked workers:
// they wait for work and exit after gopool.Idle. A worker that is running a
// function is not parked in work's select, so it is still reported.
func IgnoreWorkers() goleak.Option {
	return goleak.IgnoreTopFunction("github.com/relaymesh/relaymesh/internal/gopool.work")
}
