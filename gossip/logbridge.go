package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// logBridge is the io.Writer behind memberlist's *log.Logger. memberlist
// prefixes each line with its level ("[DEBUG] memberlist: ..."); the bridge
// maps that to a slog level — DEBUG and INFO (memberlist is chatty: every
// suspicion is INFO) to Debug, WARN to Warn, ERR to Error — and logs the
// rest of the line as the message.
type logBridge struct{ log *slog.Logger }

// newMemberlistLogger returns a *log.Logger for memberlist.Config.Logger.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(logBridge{l}, "", 0)
}

var logLevels = []struct {
	prefix string
	level  slog.Level
}{
	{"[DEBUG] ", slog.LevelDebug},
	{"[INFO] ", slog.LevelDebug},
	{"[WARN] ", slog.LevelWarn},
	{"[ERR] ", slog.LevelError},
	{"[ERROR] ", slog.LevelError},
}

func (b logBridge) Write(p []byte) (int, error) {
	line, level := bytes.TrimRight(p, "\n"), slog.LevelDebug
	for _, l := range logLevels {
		if rest, ok := bytes.CutPrefix(line, []byte(l.prefix)); ok {
			line, level = rest, l.level
			break
		}
	}
	if b.log.Enabled(context.Background(), level) {
		b.log.Log(context.Background(), level, string(line))
	}
	return len(p), nil
}
