package shard

// Session-token generations (issue 8: a kick or logout revokes the
// client's outstanding session tokens).
//
// Edges verify session tokens without a lookup, so revocation is state the
// shard replicates: per (app, clientId) a generation, 0 until the first
// revocation. Every session token carries the generation current when its
// session opened; the core refuses a reopen with a token of an older
// generation (4112). OpRevokeTokens increments it: the core proposes it
// when a client's session is kicked (tag conflict 4111, REST kick 4115) or
// closed with session/close (logout). The generation is a counter, not a
// time, so no clock of an edge or a core has to agree with another.
//
//	key:   't' app clientId
//	value: 8 bytes big-endian generation

// OpRevokeTokens revokes every session token of From in App.
const OpRevokeTokens Op = "revoke_tokens"

const tagTokenGen = 't'

func tokenGenKey(app, client string) []byte { return newKey(tagTokenGen).str(app).str(client) }

// revokeTokens increments the token generation of (App, From).
func (a *applier) revokeTokens() (*Result, *Error) {
	c := a.c
	if c.From == "" {
		return nil, fail(ErrBadCommand, "revoke_tokens without a clientId")
	}
	gen, err := TokenGeneration(a.b, c.App, c.From)
	if err != nil {
		a.err = err
		return nil, fail(ErrBadCommand, err.Error())
	}
	a.set(tokenGenKey(c.App, c.From), keyBuf(nil).ts(int64(gen+1)))
	return &Result{}, nil
}

// TokenGeneration returns the session-token generation of client in app
// (0 when none was ever revoked).
func TokenGeneration(r Reader, app, client string) (uint64, error) {
	b, ok, err := getRaw(r, tokenGenKey(app, client))
	if err != nil || !ok {
		return 0, err
	}
	g, _, ok := readTS(b)
	if !ok {
		return 0, nil
	}
	return uint64(g), nil
}
