package shard

import "encoding/json"

// Per-app sensitive-word lists set through the server API (PUT
// /1.2/rtm/sensitive-words): replicated like every other state, so every
// core filters with the same list and it survives restarts. A stored list,
// even an empty one, replaces the app's configured list (its
// sensitive_words_file or the shipped one); OpSetWords with Reset removes
// it again.
//
// Next to the list the shard keeps a version that every OpSetWords (reset
// included) increments, so a core reads 8 bytes per filtered message to
// know whether what it compiled is still current, not the list itself.

// tagApp keys per-app settings.
const tagApp = 'A'

// MaxWords bounds one app's API word list; MaxWordBytes one word.
const (
	MaxWords     = 20000
	MaxWordBytes = 100
)

func wordsKey(app string) []byte        { return newKey(tagApp).str(app).str("words") }
func wordsVersionKey(app string) []byte { return newKey(tagApp).str(app).str("words-version") }

// setWords stores (or, with Reset, removes) the app's word list and bumps
// its version.
func (a *applier) setWords() (*Result, *Error) {
	c := a.c
	if c.App == "" {
		return nil, fail(ErrBadCommand, "no app")
	}
	if !c.Reset {
		if len(c.Words) > MaxWords {
			return nil, fail(ErrBadCommand, "too many words")
		}
		for _, w := range c.Words {
			if len(w) > MaxWordBytes {
				return nil, fail(ErrBadCommand, "word too long")
			}
		}
	}
	ver, _, err := WordsVersion(a.b, c.App)
	if err != nil {
		a.err = err
		return nil, fail(ErrBadCommand, err.Error())
	}
	a.set(wordsVersionKey(c.App), keyBuf(nil).ts(ver+1))
	if c.Reset {
		a.del(wordsKey(c.App))
		return &Result{}, nil
	}
	words := c.Words
	if words == nil {
		words = []string{}
	}
	a.set(wordsKey(c.App), words)
	return &Result{}, nil
}

// WordsVersion returns the version of app's API word list; ok is false
// when the list was never set (a reset list keeps its version).
func WordsVersion(r Reader, app string) (ver int64, ok bool, err error) {
	b, ok, err := getRaw(r, wordsVersionKey(app))
	if err != nil || !ok {
		return 0, false, err
	}
	if ver, _, ok = readTS(b); !ok {
		return 0, false, errCorrupt("word list version", wordsVersionKey(app))
	}
	return ver, true, nil
}

// Words returns app's API word list; ok is false when it has none.
func Words(r Reader, app string) (words []string, ok bool, err error) {
	b, ok, err := getRaw(r, wordsKey(app))
	if err != nil || !ok {
		return nil, false, err
	}
	if err := json.Unmarshal(b, &words); err != nil {
		return nil, false, err
	}
	return words, true, nil
}
