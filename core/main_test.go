package core

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/relaymesh/relaymesh/internal/gopool/gopooltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, gopooltest.IgnoreWorkers()) }
