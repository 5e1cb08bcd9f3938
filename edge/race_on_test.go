//go:build race

package edge

// raceEnabled: the race detector is on. sync.Pool then drops items at
// random, by design, so allocation counts of pooled paths mean nothing.
const raceEnabled = true
