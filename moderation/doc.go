// Package moderation replaces sensitive words in message text, as LeanCloud
// IM does for group conversations, chatrooms and system conversations.
//
// # Matching
//
// A [Filter] is an immutable, compiled word list: an Aho–Corasick automaton
// over the UTF-8 bytes of the words. Because UTF-8 is self-synchronising, a
// word written in valid UTF-8 (CJK included) can only match whole characters
// of the text, so matching bytes is matching runes. ASCII letters match
// case-insensitively ("SPAM" hits "spam"); every other character, full-width
// Latin letters included, matches only itself. Words match as substrings: the
// matcher knows no word boundaries (CJK text has none), so a word should not
// be a common part of innocent words ("ass" would hit "class").
//
// # Replacement
//
// [Filter.Replace] scans left to right and replaces non-overlapping hits,
// each by exactly "***" whatever its length (LeanCloud's behaviour). Where
// hits overlap, the one that starts first wins, and among hits that start at
// the same place the longest wins (leftmost-longest): with the words "abc"
// and "bcd", "abcd" becomes "***d"; with "ab" and "abcd", "abcde" becomes
// "***e". Text with no hit is returned as is, without allocating. Output never
// contains a listed word unless the word itself contains '*', which the
// replacement could recreate.
//
// [Filter.FilterMessage] understands LeanCloud typed messages
// ({"_lctype":-1,"_lctext":"…","_lcattrs":{…}}): when the payload is a JSON
// object, only its top-level "_lctext" string is filtered and every other byte
// of the payload is kept; a JSON object without a string "_lctext" is left
// alone. Anything that is not a JSON object is filtered as plain text. Binary
// messages are the caller's to skip.
//
// # Word lists
//
// The project ships a short default list ([DefaultWords], default_words.txt,
// generic abuse and spam in English and Chinese) meant to be replaced by
// operators. A [Registry] holds one Filter per app: an app with a custom list
// ([Registry.Set], [Registry.LoadFile]) uses that list instead of the default,
// exactly as a list uploaded in LeanCloud's console replaces its built-in one;
// [Registry.Reset] returns the app to the default. Lists are text, one word
// per line, with blank lines and lines starting with '#' ignored
// ([ParseWords]). Words are trimmed of surrounding white space and
// deduplicated.
//
// Everything here is safe for concurrent use: a Filter never changes, and a
// Registry swaps compiled Filters atomically, so readers never lock.
package moderation
