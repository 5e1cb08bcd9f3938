package core

import (
	"context"
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
// The filter path reads the list's version (8 bytes) on each filtered
// message and reads and compiles the list only when the version changes.

// apiWords caches, per app, what the API list of a version compiled to.
type apiWords struct {
	mu sync.Mutex
	m  map[string]apiFilter // guarded by mu
}

type apiFilter struct {
	ver int64
	f   *moderation.Filter // nil: no API list at ver (reset)
}

// filterFor returns the filter of app: its API list when it has one, else
// its configured list.
func (c *Core) filterFor(app string) *moderation.Filter {
	st := c.state()
	ver, ok, err := shard.WordsVersion(st, app)
	if err != nil || !ok {
		return c.words.For(app)
	}
	c.apiWords.mu.Lock()
	defer c.apiWords.mu.Unlock()
	e, hit := c.apiWords.m[app]
	if !hit || e.ver != ver {
		e = apiFilter{ver: ver}
		words, has, err := shard.Words(st, app)
		if err == nil && has {
			e.f, err = moderation.Compile(words)
		}
		if err != nil {
			c.log.Warn("stored sensitive-word list", "app", app, "err", err)
			return c.words.For(app) // not cached: read again next time
		}
		if c.apiWords.m == nil {
			c.apiWords.m = make(map[string]apiFilter)
		}
		c.apiWords.m[app] = e
	}
	if e.f == nil {
		return c.words.For(app)
	}
	return e.f
}

// adminWords serves WORDS_SET and WORDS_GET.
func (c *Core) adminWords(ctx context.Context, app string, a *meshpb.AdminRequest) (*meshpb.ClientReply, error) {
	if a.GetOp() == meshpb.AdminRequest_WORDS_GET {
		words, ok, err := shard.Words(c.state(), app)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errInternal, err)
		}
		return &meshpb.ClientReply{Admin: &meshpb.AdminReply{Words: words, WordsSet: ok}}, nil
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
	}
	if _, err := c.propose(ctx, &shard.Command{Op: shard.OpSetWords, App: app, Now: c.nowMS(),
		Words: words, Reset: a.GetWordsReset()}); err != nil {
		return nil, err
	}
	return &meshpb.ClientReply{}, nil
}
