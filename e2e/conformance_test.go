package e2e

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// sdkDir is the directory of the Node conformance suites, with the official
// SDK installed (make test runs `npm ci --prefix conformance/js`).
func sdkDir(t *testing.T) string {
	t.Helper()
	js, err := filepath.Abs("../conformance/js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(js, "node_modules", "leancloud-realtime")); err != nil {
		t.Fatalf("the SDK is not installed: run `npm ci --prefix conformance/js` (make test does): %v", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is required for the conformance suite: %v", err)
	}
	return js
}

// nodeSuite returns the conformance directory (sdkDir) and the Node test
// files in its folder sub ("" for its own); it skips the test in -short
// mode and fails it when there are none.
func nodeSuite(t *testing.T, sub string) (js string, files []string) {
	t.Helper()
	if testing.Short() {
		t.Skip("conformance runs Node and relaymesh processes; skipped in -short mode")
	}
	js = sdkDir(t)
	var err error
	if files, err = filepath.Glob(filepath.Join(js, sub, "*.test.js")); err != nil || len(files) == 0 {
		t.Fatalf("no conformance tests in %s (%v)", filepath.Join(js, sub), err)
	}
	return js, files
}

// freeTCPPort returns a loopback TCP port that was free a moment ago, for
// a server another process starts.
func freeTCPPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// runNode runs node's test runner on files with env added, logging its
// output, and fails the test if any Node test failed.
func runNode(t *testing.T, dir string, files []string, env ...string) {
	t.Helper()
	args := append([]string{"--test", "--test-concurrency=1", "--test-reporter=spec"}, files...)
	cmd := exec.Command("node", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "NO_COLOR=1"), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("conformance suite failed: %v", err)
	}
}

// TestConformanceJS runs the official leancloud-realtime@4.3.1 SDK in Node
// (conformance/js/*.test.js) against a real `relaymesh dev` process. The
// core suite, im.test.js, runs in the three modes an app can pick: binary
// .3, noBinary (base64) and pushOfflineMessages (.1).
func TestConformanceJS(t *testing.T) {
	js, files := nodeSuite(t, "")
	p := startDev(t, t.TempDir(), freeAddr(t))
	runNode(t, js, files, "RELAYMESH_URL="+p.URL)
}

// TestConformanceJSShards runs the same suites against a dev region of
// four shards (issue 9): conversations, chatrooms, system conversations
// and queries spread over four raft groups behave as on one.
func TestConformanceJSShards(t *testing.T) {
	js, files := nodeSuite(t, "")
	p := startDev(t, t.TempDir(), freeAddr(t), "--shards", "4")
	runNode(t, js, files, "RELAYMESH_URL="+p.URL)
}

// TestConformanceSignedJS runs conformance/js/signed against a relaymesh dev
// whose config file lists one app that requires login and conversation
// signatures.
func TestConformanceSignedJS(t *testing.T) {
	js, files := nodeSuite(t, "signed")
	const app, master = "signed-app-0001", "signed-master-key"
	p := startDevConfig(t, `[[apps]]
id = "`+app+`"
master_key = "`+master+`"
signature_required = true
conversation_signature_required = true
`)
	runNode(t, js, files, "RELAYMESH_SIGNED_URL="+p.URL, "RELAYMESH_SIGNED_APP="+app, "RELAYMESH_SIGNED_MASTER="+master)
}

// TestConformanceLimitsJS runs conformance/js/limits against a relaymesh
// dev started with small core limits (members, offline messages per
// conversation, conversations in the unread notification), so the SDK can
// reach each cap in a few operations.
func TestConformanceLimitsJS(t *testing.T) {
	js, files := nodeSuite(t, "limits")
	const members, offline, unread = "5", "3", "2"
	p := startDev(t, t.TempDir(), freeAddr(t), "--max-members", members,
		"--max-offline-per-conv", offline, "--max-unread-convs", unread, "--ops-per-minute", "-1")
	runNode(t, js, files, "RELAYMESH_URL="+p.URL, "RELAYMESH_MAX_MEMBERS="+members,
		"RELAYMESH_MAX_OFFLINE="+offline, "RELAYMESH_MAX_UNREAD="+unread)
}

// TestConformanceIntegrationsJS runs conformance/js/integrations against a
// relaymesh dev whose config points one app's hooks and push webhook at an
// HTTP server that the Node suite itself runs on a free loopback port:
// sensitive-word filtering, _messageReceived, _conversationStart and offline
// push through the official SDK, with every call's signature verified.
func TestConformanceIntegrationsJS(t *testing.T) {
	js, files := nodeSuite(t, "integrations")
	const app, templateApp, master = "integ-app-0001", "integ-app-0002", "integ-master-key"
	port := freeTCPPort(t) // the Node suite listens on it
	base := "http://127.0.0.1:" + port
	p := startDevConfig(t, `[[apps]]
id = "`+app+`"
master_key = "`+master+`"
hook_base_url = "`+base+`"
push_webhook_url = "`+base+`/push"
push_template = '{"alert":"template for ${convId}"}'

[apps.hooks]
_messageReceived = "`+base+`/received"

[[apps]]
id = "`+templateApp+`"
master_key = "`+master+`"
push_webhook_url = "`+base+`/push"
push_template = '{"alert":"${fromClientId} wrote in ${convId}","ts":"${timestamp}"}'
`)
	runNode(t, js, files, "RELAYMESH_INTEG_URL="+p.URL, "RELAYMESH_INTEG_APP="+app,
		"RELAYMESH_INTEG_MASTER="+master, "RELAYMESH_INTEG_HOOK_PORT="+port, "RELAYMESH_INTEG_TEMPLATE_APP="+templateApp)
}

// TestConformanceAppHooksJS runs conformance/js/apphooks (issue 8) against a
// relaymesh dev whose one app requires login signatures and points its
// user store (user_verify_url) and every hook at the HTTP server the Node
// suite runs: createIMClient(user) through /1.1/rtm/sign, the online,
// offline, conversation and _messageUpdate hooks, and the replay of missed
// conversation events through /1.1/rtm/notifications.
func TestConformanceAppHooksJS(t *testing.T) {
	js, files := nodeSuite(t, "apphooks")
	const app, key, master = "apphooks-app-0001", "apphooks-app-key", "apphooks-master-key"
	port := freeTCPPort(t) // the Node suite listens on it
	base := "http://127.0.0.1:" + port
	p := startDevConfig(t, `[[apps]]
id = "`+app+`"
key = "`+key+`"
master_key = "`+master+`"
signature_required = true
hook_base_url = "`+base+`"
user_verify_url = "`+base+`/users/me"
`)
	runNode(t, js, files, "RELAYMESH_APPHOOKS_URL="+p.URL, "RELAYMESH_APPHOOKS_APP="+app, "RELAYMESH_APPHOOKS_KEY="+key,
		"RELAYMESH_APPHOOKS_MASTER="+master, "RELAYMESH_APPHOOKS_PORT="+port)
}
