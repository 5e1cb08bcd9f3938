package corelink

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/relaymesh/relaymesh/internal/gopool/gopooltest"
)

// Close returns after every goroutine of the link has ended.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, gopooltest.IgnoreWorkers()) }
