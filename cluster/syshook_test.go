package cluster

import (
	"errors"
	"testing"
)

func TestLoadConfigSysWebhook(t *testing.T) {
	c, err := LoadConfig(writeConfig(t, `
[[apps]]
id = "app-1"
master_key = "m"
hook_key = "hk"
sys_webhook_url = "http://127.0.0.1:1/sys"
[[apps]]
id = "app-2"
master_key = "m2"
`))
	if err != nil {
		t.Fatal(err)
	}
	in, err := c.Integrations(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := in.SysWebhook.Apps; len(got) != 1 || got["app-1"].URL != "http://127.0.0.1:1/sys" || got["app-1"].MasterKey != "m" || got["app-1"].HookKey != "hk" {
		t.Errorf("sys webhook apps: got %+v, want app-1's URL and keys only", got)
	}
	for _, bad := range []string{"ftp://x/y", "not a url", "http://"} {
		if _, err := LoadConfig(writeConfig(t, "[[apps]]\nid = \"a\"\nsys_webhook_url = \""+bad+"\"\n")); !errors.Is(err, ErrConfig) {
			t.Errorf("sys_webhook_url %q: got %v, want ErrConfig", bad, err)
		}
	}
}
