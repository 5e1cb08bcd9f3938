package netem

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultPoll is how often a Watcher reads its file.
const DefaultPoll = 25 * time.Millisecond

// Watcher keeps a Table in step with a rules file (the JSON form of
// Rules): it reads the file every poll interval and, when its bytes
// changed, sets the new rules and writes the generation it applied to its
// acknowledgement file. A file that does not parse is logged and the
// rules in force stay.
type Watcher struct {
	path, ack string
	table     *Table
	poll      time.Duration
	log       *slog.Logger
	done      chan struct{}
	wg        sync.WaitGroup

	last []byte // owned by the watcher goroutine (and Watch before it starts)
}

// Watch loads the rules file at path into t, failing when it cannot, and
// starts watching it. ack, when set, is the acknowledgement file. poll
// 0 means DefaultPoll. Close stops it.
func Watch(path, ack string, t *Table, poll time.Duration, log *slog.Logger) (*Watcher, error) {
	if poll <= 0 {
		poll = DefaultPoll
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{path: path, ack: ack, table: t, poll: poll, log: log, done: make(chan struct{})}
	if err := w.load(); err != nil {
		return nil, err
	}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// Close stops watching; the table keeps the rules last loaded.
func (w *Watcher) Close() {
	close(w.done)
	w.wg.Wait()
}

func (w *Watcher) run() {
	defer w.wg.Done()
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		if err := w.load(); err != nil {
			w.log.Warn("netem: rules not reloaded", "file", w.path, "err", err)
		}
	}
}

// load applies the file if it changed.
func (w *Watcher) load() error {
	b, err := os.ReadFile(w.path)
	if err != nil {
		return fmt.Errorf("netem: read rules: %w", err)
	}
	if w.last != nil && bytes.Equal(b, w.last) {
		return nil
	}
	r := new(Rules)
	if err := json.Unmarshal(b, r); err != nil {
		w.last = b // do not log it again until it changes
		return fmt.Errorf("netem: %s: %w", w.path, err)
	}
	w.table.Set(r)
	w.last = b
	w.log.Debug("netem: rules applied", "generation", r.Generation)
	if w.ack != "" {
		if err := writeAtomic(w.ack, []byte(strconv.FormatUint(r.Generation, 10)+"\n")); err != nil {
			return fmt.Errorf("netem: acknowledge: %w", err)
		}
	}
	return nil
}

// WriteFile writes r to path atomically (a Watcher never sees half a file).
func WriteFile(path string, r *Rules) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(b, '\n'))
}

// ReadAck returns the generation an acknowledgement file names.
func ReadAck(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
