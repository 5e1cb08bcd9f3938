package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/relaymesh/relaymesh/migrate/leancloud"
)

// runImport: relaymesh import leancloud … (docs/MIGRATING-FROM-LEANCLOUD.md).
func runImport(args []string) error {
	if len(args) == 0 || args[0] != "leancloud" {
		return errors.New("usage: relaymesh import leancloud --conversations FILE … (-h for the flags)")
	}
	fs := flag.NewFlagSet("import leancloud", flag.ContinueOnError)
	convs := fs.String("conversations", "", "the _Conversation export (the console's JSON Lines; a JSON array or {\"results\":[…]} also)")
	infos := fs.String("member-infos", "", "the _ConversationMemberInfo export (optional): its Manager rows become managers")
	history := fs.String("history", "", "a directory of saved history files (*.jsonl rows, or *.json arrays of the history API's rows)")
	lcServer := fs.String("leancloud-server", "", "fetch the history from this LeanCloud API server (e.g. https://xxxxxxxx.api.lncldglobal.com)")
	lcApp := fs.String("leancloud-app-id", "", "the LeanCloud app id (default: --app-id)")
	lcKey := fs.String("leancloud-master-key", "", "the LeanCloud master key (default: $LEANCLOUD_MASTER_KEY)")
	save := fs.String("save", "", "with --leancloud-server: keep the fetched history in DIR (<id>.jsonl); a later run reads it from there instead of fetching, or pass it as --history")
	server := fs.String("server", "", "the relaymesh to import to, e.g. http://127.0.0.1:8080 (its REST API)")
	app := fs.String("app-id", "", "the app id on relaymesh")
	key := fs.String("master-key", "", "the app's master key on relaymesh (default: $RELAYMESH_MASTER_KEY)")
	caFile := fs.String("ca", "", "PEM CA certificates to trust for an https --server (default: the system's)")
	state := fs.String("state", "", "the resume state file (default: relaymesh-import-<app-id>.state here; \"none\": keep none)")
	parallel := fs.Int("parallel", 4, "conversations whose history is fetched and imported at once")
	dry := fs.Bool("dry-run", false, "read and check everything, print the summary, write nothing to relaymesh (--save still saves)")
	maxMembers := fs.Int("max-members", 0, "the target's member cap of a normal conversation (0: 500)")
	every := fs.Duration("progress-every", 2*time.Second, "how often the progress line is printed when stderr is not a terminal")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *convs == "" {
		return errors.New("import leancloud: --conversations is required")
	}
	if *lcApp == "" {
		*lcApp = *app
	}
	if *app == "" {
		*app = *lcApp
	}
	cfg := leancloud.Config{Conversations: *convs, MemberInfos: *infos, HistoryDir: *history, SaveDir: *save, DryRun: *dry,
		MaxMembers: *maxMembers, Parallel: *parallel, Progress: os.Stderr, TTY: isTerminal(os.Stderr), Every: *every}
	if *lcServer != "" {
		if *lcKey == "" {
			*lcKey = os.Getenv("LEANCLOUD_MASTER_KEY")
		}
		if *lcApp == "" || *lcKey == "" {
			return errors.New("import leancloud: fetching needs --leancloud-app-id (or --app-id) and --leancloud-master-key (or $LEANCLOUD_MASTER_KEY)")
		}
		cfg.Source = &leancloud.Source{Server: *lcServer, AppID: *lcApp, MasterKey: *lcKey}
	}
	if !*dry {
		if *key == "" {
			*key = os.Getenv("RELAYMESH_MASTER_KEY")
		}
		if *server == "" || *app == "" || *key == "" {
			return errors.New("import leancloud: writing needs --server, --app-id and --master-key (or $RELAYMESH_MASTER_KEY); or pass --dry-run")
		}
		cfg.Target = &leancloud.Target{Server: *server, AppID: *app, MasterKey: *key}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return fmt.Errorf("import leancloud: --ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("import leancloud: --ca %s: no PEM certificates", *caFile)
			}
			cfg.Target.Client = &http.Client{Timeout: time.Minute,
				Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		}
		switch *state {
		case "":
			cfg.StateFile = "relaymesh-import-" + *app + ".state"
		case "none":
		default:
			cfg.StateFile = *state
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := leancloud.Run(ctx, cfg)
	sum.Write(os.Stdout)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("import interrupted; run the same command again to resume (state: %s)", cfg.StateFile)
	}
	return err
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
