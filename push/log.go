package push

import (
	"context"
	"log/slog"
)

// Log is a provider that logs each push at Info level, for development.
type Log struct {
	logger *slog.Logger
}

// NewLog returns a Log provider writing to l (slog.Default() when nil).
func NewLog(l *slog.Logger) *Log {
	if l == nil {
		l = slog.Default()
	}
	return &Log{logger: l}
}

// Push logs r and never fails.
func (l *Log) Push(ctx context.Context, r Request) error {
	l.logger.LogAttrs(ctx, slog.LevelInfo, "offline push",
		slog.String("app", r.AppID),
		slog.String("conv", r.ConvID),
		slog.String("from", r.From),
		slog.Any("to", r.To),
		slog.Int64("timestamp", r.Timestamp),
		slog.String("payload", string(r.Payload)),
	)
	return nil
}
