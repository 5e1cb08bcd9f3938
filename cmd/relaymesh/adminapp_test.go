package main

import (
	"io"
	"strings"
	"testing"
)

// TestAdminAppArgs: bad arguments are refused before anything is dialled
// (no certificate is given, so a command that got as far as dialling would
// fail naming the certificate instead).
func TestAdminAppArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "want list, show, set"},
		{[]string{"frob"}, "unknown subcommand"},
		{[]string{"show"}, "want one app id"},
		{[]string{"show", "a", "b"}, "want one app id"},
		{[]string{"show", "a:b"}, "invalid app id"},
		{[]string{"show", strings.Repeat("x", 65)}, "invalid app id"},
		{[]string{"list", "extra"}, "unexpected argument"},
		{[]string{"set", "app"}, "nothing to set"},
		{[]string{"set", "app", "--master-key", ""}, "must not be empty"},
		{[]string{"set", "app", "--signature-required=perhaps"}, "invalid boolean"},
		{[]string{"set", "app", "--hook-url", "noequals"}, "NAME=URL"},
		{[]string{"set", "app", "--hook-url", "=http://x/"}, "NAME=URL"},
		{[]string{"set", "app", "--key", "k"}, "nothing to set (--app-key"}, // --key is the certificate's
		{[]string{"delete", "app"}, "add --yes"},
		{[]string{"rotate-master-key", "app", "--yes"}, "--yes is for delete"},
		{[]string{"rotate-master-key"}, "want one app id"},
		{[]string{"list"}, "--config, or --ca"},
	} {
		err := adminApp(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("admin app %q: got %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
