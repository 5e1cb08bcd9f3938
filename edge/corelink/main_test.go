package corelink

import (
	"github.com/relaymesh/relaymesh/internal/gopool/gopooltest"
	"testing"

	"go.uber.org/goleak"
)

// Close returns after every goroutine of the link has ended.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, gopooltest.IgnoreWorkers()) }
