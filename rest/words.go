package rest

import (
	"net/http"

	"github.com/relaymesh/relaymesh/proto/meshpb"
)

// The app's sensitive-word list (a relaymesh addition: LeanCloud's list was
// uploaded in its console). Master key.
//
//	GET    /1.2/rtm/sensitive-words  -> {"words":[…], "custom":true}, or
//	                                    {"words":[], "custom":false} while the
//	                                    configured list (file or shipped) applies
//	PUT    /1.2/rtm/sensitive-words  {"words":[…]} -> {}: replaces the list for
//	                                    every core; [] turns filtering off
//	DELETE /1.2/rtm/sensitive-words  -> {}: back to the configured list
//
// Hits become "***" (package moderation).

func (h *Handler) getWords(c *call) *apiError {
	rep, _, aerr := h.do(c, "", &meshpb.AdminRequest{Op: meshpb.AdminRequest_WORDS_GET}, nil)
	if aerr != nil {
		return aerr
	}
	words := rep.GetAdmin().GetWords()
	if words == nil {
		words = []string{}
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"words": words, "custom": rep.GetAdmin().GetWordsSet()})
	return nil
}

func (h *Handler) putWords(c *call) *apiError {
	var body struct {
		Words *[]string `json:"words"`
	}
	if aerr := h.decode(c, &body); aerr != nil {
		return aerr
	}
	if body.Words == nil {
		return errBadRequest("words (an array of strings) is required")
	}
	if _, _, aerr := h.do(c, "", &meshpb.AdminRequest{Op: meshpb.AdminRequest_WORDS_SET, Words: *body.Words}, nil); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}

func (h *Handler) deleteWords(c *call) *apiError {
	if _, _, aerr := h.do(c, "", &meshpb.AdminRequest{Op: meshpb.AdminRequest_WORDS_SET, WordsReset: true}, nil); aerr != nil {
		return aerr
	}
	writeJSON(c.w, http.StatusOK, struct{}{})
	return nil
}
