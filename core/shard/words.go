package shard

// Per-app sensitive-word lists set through the server API (PUT
// /1.2/rtm/sensitive-words): replicated like every other state, so every
// core filters with the same list and it survives restarts. A stored list,
// even an empty one, replaces the app's configured list (its
// sensitive_words_file or the shipped one); OpSetWords with Reset removes
// it again.

// tagApp keys per-app settings.
const tagApp = 'A'

// MaxWords bounds one app's API word list; MaxWordBytes one word.
const (
	MaxWords     = 20000
	MaxWordBytes = 100
)

func wordsKey(app string) []byte { return newKey(tagApp).str(app).str("words") }

// setWords stores (or, with Reset, removes) the app's word list.
func (a *applier) setWords() (*Result, *Error) {
	c := a.c
	if c.App == "" {
		return nil, fail(ErrBadCommand, "no app")
	}
	if c.Reset {
		a.del(wordsKey(c.App))
		return &Result{}, nil
	}
	if len(c.Words) > MaxWords {
		return nil, fail(ErrBadCommand, "too many words")
	}
	words := make([]string, 0, len(c.Words))
	for _, w := range c.Words {
		if len(w) > MaxWordBytes {
			return nil, fail(ErrBadCommand, "word too long")
		}
		words = append(words, w)
	}
	a.set(wordsKey(c.App), words)
	return &Result{}, nil
}

// WordsRaw returns the JSON of app's API word list (a JSON array of
// strings); ok is false when the app has none. Callers compare the bytes
// to cache what they compiled from them.
func WordsRaw(r Reader, app string) (raw []byte, ok bool, err error) {
	return getRaw(r, wordsKey(app))
}
