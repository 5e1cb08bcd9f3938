package core

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/relaymesh/relaymesh/core/shard"
	"github.com/relaymesh/relaymesh/moderation"
	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// Sensitive-word lists set through the server API (WORDS_SET, REST PUT
// /1.2/rtm/sensitive-words) live in the shard (shard.OpSetWords), so every
// core filters with the same list and it survives restarts and leader
// changes. An app's API list wins over its configured one (Config.Words:
// sensitive_words_file or the shipped list); resetting it brings that back.
//
// The filter path reads the stored list's bytes on each filtered message
// (one small Pebble read) and compiles a list only when those bytes change.

// apiWords caches the compiled API list of each app by its stored bytes.
type apiWords struct {
	mu sync.Mutex
	m  map[string]apiFilter // guarded by mu
}

type apiFilter struct {
	raw []byte
	f   *moderation.Filter
}

// filterFor returns the filter of app: its API list when it has one, else
// its configured list.
func (c *Core) filterFor(app string) *moderation.Filter {
	raw, ok, err := shard.WordsRaw(c.state(), app)
	if err != nil || !ok {
		return c.words.For(app)
	}
	c.apiWords.mu.Lock()
	defer c.apiWords.mu.Unlock()
	if e, ok := c.apiWords.m[app]; ok && bytes.Equal(e.raw, raw) {
		return e.f
	}
	var words []string
	f, err := func() (*moderation.Filter, error) {
		if err := json.Unmarshal(raw, &words); err != nil {
			return nil, err
		}
		return moderation.Compile(words)
	}()
	if err != nil {
		c.log.Warn("stored sensitive-word list", "app", app, "err", err)
		return c.words.For(app)
	}
	if c.apiWords.m == nil {
		c.apiWords.m = make(map[string]apiFilter)
	}
	c.apiWords.m[app] = apiFilter{raw: raw, f: f}
	return f
}

// adminWords serves WORDS_SET and WORDS_GET.
func (c *Core) adminWords(ctx context.Context, app string, a *meshpb.AdminRequest) (*meshpb.ClientReply, error) {
	if a.GetOp() == meshpb.AdminRequest_WORDS_GET {
		raw, ok, err := shard.WordsRaw(c.state(), app)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err)
		}
		rep := &meshpb.AdminReply{WordsSet: ok}
		if ok {
			if err := json.Unmarshal(raw, &rep.Words); err != nil {
				return nil, fmt.Errorf("%w: %v", errInternal, err)
			}
		}
		return &meshpb.ClientReply{Admin: rep}, nil
	}
	words := a.GetWords()
	if !a.GetWordsReset() {
		if len(words) > shard.MaxWords {
			return nil, fmt.Errorf("%w: at most %d words", errMalformed, shard.MaxWords)
		}
		for _, w := range words {
			if len(w) > shard.MaxWordBytes {
				return nil, fmt.Errorf("%w: a word is longer than %d bytes", errMalformed, shard.MaxWordBytes)
			}
		}
		if _, err := moderation.Compile(words); err != nil {
			return nil, fmt.Errorf("%w: %v", errMalformed, err)
		}
		if words == nil {
			words = []string{}
		}
	}
	if _, err := c.propose(ctx, &shard.Command{Op: shard.OpSetWords, App: app, Now: c.nowMS(),
		Words: words, Reset: a.GetWordsReset()}); err != nil {
		return nil, err
	}
	return &meshpb.ClientReply{}, nil
}
