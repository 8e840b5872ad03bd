package engineio

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/lesismal/nbio/logging"
)

// routeNbioLog sends nbio's log through log/slog's default logger, once
// per process (nbio's logger is a global). Its own logger prints to stdout
// in a format of its own, and at Info it announces every start and stop of
// a poller, which is chatter to an operator: those go to Debug. Warnings
// and errors stay what they are.
var routeNbioLog = sync.OnceFunc(func() { logging.SetLogger(nbioLog{}) })

type nbioLog struct{}

func (nbioLog) Debug(format string, v ...any) { logf(slog.LevelDebug, format, v) }
func (nbioLog) Info(format string, v ...any)  { logf(slog.LevelDebug, format, v) }
func (nbioLog) Warn(format string, v ...any)  { logf(slog.LevelWarn, format, v) }
func (nbioLog) Error(format string, v ...any) { logf(slog.LevelError, format, v) }

func logf(l slog.Level, format string, v []any) {
	ctx := context.Background()
	if lg := slog.Default(); lg.Enabled(ctx, l) {
		lg.Log(ctx, l, "nbio: "+fmt.Sprintf(format, v...))
	}
}
