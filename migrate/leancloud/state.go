package leancloud

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// state is the resume file: JSON Lines, appended and synced as work
// finishes, read back at the next start.
//
//	{"k":"target","server":…,"app":…}   first line: whom the import writes to
//	{"k":"convs","ids":[…]}              conversations created or found existing
//	{"k":"history","id":…}               a conversation's whole history imported (fetch, or a saved file)
//	{"k":"file","path":…,"size":…}       a history file imported to its end
//
// A torn last line (a crash in the middle of a write) is ignored.
type state struct {
	f       *os.File
	convs   map[string]bool
	history map[string]bool
	files   map[string]int64
}

type stateRec struct {
	K      string   `json:"k"`
	Server string   `json:"server,omitempty"`
	App    string   `json:"app,omitempty"`
	IDs    []string `json:"ids,omitempty"`
	ID     string   `json:"id,omitempty"`
	Path   string   `json:"path,omitempty"`
	Size   int64    `json:"size,omitempty"`
}

// openState opens (or creates) the state file of an import to server/app;
// path "" keeps no state.
func openState(path, server, app string) (*state, error) {
	s := &state{convs: map[string]bool{}, history: map[string]bool{}, files: map[string]int64{}}
	if path == "" {
		return s, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	first := true
	for sc.Scan() {
		var r stateRec
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue // a torn line
		}
		if first {
			first = false
			if r.K != "target" {
				f.Close()
				return nil, fmt.Errorf("state file %s: not a relaymesh import state file", path)
			}
			if r.Server != server || r.App != app {
				f.Close()
				return nil, fmt.Errorf("state file %s records an import to %s app %s, not %s app %s: pass another --state",
					path, r.Server, r.App, server, app)
			}
			continue
		}
		switch r.K {
		case "convs":
			for _, id := range r.IDs {
				s.convs[id] = true
			}
		case "history":
			s.history[r.ID] = true
		case "file":
			s.files[r.Path] = r.Size
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		f.Close()
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	s.f = f
	if first {
		if err := s.write(stateRec{K: "target", Server: server, App: app}); err != nil {
			f.Close()
			return nil, err
		}
	}
	return s, nil
}

// write appends one record and syncs it. A torn last line from a crash
// is closed with a newline first.
func (s *state) write(r stateRec) error {
	if s.f == nil {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := s.f.Write(append([]byte("\n"), b...)); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return s.f.Sync()
}

func (s *state) doneConvs(ids []string) error {
	for _, id := range ids {
		s.convs[id] = true
	}
	return s.write(stateRec{K: "convs", IDs: ids})
}

func (s *state) doneHistory(cid string) error {
	s.history[cid] = true
	return s.write(stateRec{K: "history", ID: cid})
}

func (s *state) doneFile(path string, size int64) error {
	s.files[path] = size
	return s.write(stateRec{K: "file", Path: path, Size: size})
}

func (s *state) close() error {
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}
