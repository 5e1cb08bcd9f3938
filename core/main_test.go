package core

import (
	"github.com/relaymesh/relaymesh/internal/gopool/gopooltest"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, gopooltest.IgnoreWorkers()) }
