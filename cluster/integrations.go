package cluster

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/hooks"
	"github.com/relaymesh/relaymesh/moderation"
	"github.com/relaymesh/relaymesh/push"
)

// AppConfig is one [[apps]] entry: the app and its sensitive-word list,
// hooks and offline push (docs/OPERATIONS.md, "Filtering, hooks, push").
//
//	[[apps]]
//	id = "AbCd1234-gzGzoHsz"
//	master_key = "m"                                  # also signs hook and push calls
//	sensitive_words_file = "words.txt"                # replaces the shipped list
//	hook_base_url = "https://engine.example.com"      # /1.1/functions/<hook>
//	hook_policy = "fail_open"                          # or "fail_closed"
//	hook_key = "…"                                     # sent as X-LC-Hook-Key
//	push_provider = "webhook"                          # "webhook", "log" or "" (off)
//	push_webhook_url = "https://push-gateway.example.com/push"
//	push_template = '{"alert":"${fromClientId}: new message"}'
//	sys_webhook_url = "https://hooks.example.com/sys"  # service-conversation webhook (signed like hooks)
//	[apps.hooks]                                       # per-hook URLs, win over hook_base_url
//	_messageReceived = "https://hooks.example.com/received"
//	[apps.push]                                        # device push: APNs and FCM (pushcfg.go)
type AppConfig struct {
	apps.App
	SensitiveWordsFile string            `toml:"sensitive_words_file"`
	HookBaseURL        string            `toml:"hook_base_url"`
	Hooks              map[string]string `toml:"hooks"`
	HookPolicy         string            `toml:"hook_policy"`
	HookKey            string            `toml:"hook_key"`
	PushProvider       string            `toml:"push_provider"`
	PushWebhookURL     string            `toml:"push_webhook_url"`
	PushTemplate       string            `toml:"push_template"`
	SysWebhookURL      string            `toml:"sys_webhook_url"`

	// Device push (issue 8): [apps.push], [apps.push.apns],
	// [apps.push.fcm]; see AppPushConfig.
	Push AppPushConfig `toml:"push"`
	// App users (issue 8; docs/OPERATIONS.md "App users"): the app's own
	// user store, which relaymesh asks who holds a session token (GET with
	// X-LC-Session, like LeanCloud's /1.1/users/me; hooks/login.go) before
	// it signs a login for that user (POST /1.1/rtm/sign, GET
	// /1.2/rtm/clients/sign). Edges call it; its requests are signed like
	// hooks. Empty: those endpoints answer 501.
	UserVerifyURL string `toml:"user_verify_url"`
}

// Integrations are the filter, hooks and push a core is built with;
// see core.Config. The core closes the push providers; Close is for
// integrations no core was built with.
type Integrations struct {
	Words *moderation.Registry
	Hooks *hooks.Client // nil: no app has hooks
	Push  core.PushConfig
	// SysWebhook is the service-conversation webhook (hooks.SysWebhook);
	// no Apps: off.
	SysWebhook hooks.SysConfig
}

// check validates the integration keys of one app.
func (a AppConfig) check() error {
	for name := range a.Hooks {
		if !isHook(name) {
			return fmt.Errorf("%w: app %q: [apps.hooks] %q is not a hook (%s)", ErrConfig, a.ID, name, strings.Join(hooks.Names, ", "))
		}
	}
	if _, err := policy(a.HookPolicy); err != nil {
		return fmt.Errorf("%w: app %q: %v", ErrConfig, a.ID, err)
	}
	if a.SysWebhookURL != "" {
		if u, err := url.Parse(a.SysWebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: app %q: sys_webhook_url %q: want an http or https URL", ErrConfig, a.ID, a.SysWebhookURL)
		}
	}
	if a.UserVerifyURL != "" {
		if u, err := url.Parse(a.UserVerifyURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: app %q: user_verify_url %q: want an http or https URL", ErrConfig, a.ID, a.UserVerifyURL)
		}
	}
	switch a.pushProvider() {
	case "", "log":
	case "webhook":
		if a.PushWebhookURL == "" {
			return fmt.Errorf("%w: app %q: push_provider webhook needs push_webhook_url", ErrConfig, a.ID)
		}
	default:
		return fmt.Errorf("%w: app %q: push_provider %q: want webhook, log or empty", ErrConfig, a.ID, a.PushProvider)
	}
	return a.Push.check(a.ID) // pushcfg.go
}

func (a AppConfig) pushProvider() string {
	if a.PushProvider == "" && a.PushWebhookURL != "" {
		return "webhook"
	}
	return a.PushProvider
}

func isHook(name string) bool {
	for _, n := range hooks.Names {
		if n == name {
			return true
		}
	}
	return false
}

func policy(s string) (hooks.Policy, error) {
	switch s {
	case "", "fail_open":
		return hooks.FailOpen, nil
	case "fail_closed":
		return hooks.FailClosed, nil
	}
	return 0, fmt.Errorf("hook_policy %q: want fail_open or fail_closed", s)
}

// AppList returns the apps of the file without their integrations.
func (c *Config) AppList() []apps.App {
	out := make([]apps.App, len(c.Apps))
	for i, a := range c.Apps {
		out[i] = a.App
	}
	return out
}

// Integrations loads the apps' word lists and builds their hooks and push
// providers. Apps without a sensitive_words_file use the shipped list.
func (c *Config) Integrations(log *slog.Logger) (Integrations, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := Integrations{Words: moderation.NewRegistry(nil), Hooks: c.Hooks()}
	router := pushRouter{}
	templates := map[string]string{}
	for _, a := range c.Apps {
		if a.SensitiveWordsFile != "" {
			if err := out.Words.LoadFile(a.ID, c.Path(a.SensitiveWordsFile)); err != nil {
				router.Close()
				return Integrations{}, fmt.Errorf("%w: app %q: %v", ErrConfig, a.ID, err)
			}
		}
		switch a.pushProvider() {
		case "webhook":
			router[a.ID] = append(router[a.ID], namedProvider{"webhook", push.NewWebhook(push.WebhookConfig{URL: a.PushWebhookURL, Key: a.MasterKey})})
		case "log":
			router[a.ID] = append(router[a.ID], namedProvider{"log", push.NewLog(log.With("part", "push"))})
		}
		devs, err := c.deviceProviders(a, log) // pushcfg.go
		if err != nil {
			router.Close()
			return Integrations{}, err
		}
		router[a.ID] = append(router[a.ID], devs...)
		if a.PushTemplate != "" {
			templates[a.ID] = a.PushTemplate
		}
		if a.SysWebhookURL != "" {
			if out.SysWebhook.Apps == nil {
				out.SysWebhook.Apps = map[string]hooks.SysApp{}
			}
			out.SysWebhook.Apps[a.ID] = hooks.SysApp{URL: a.SysWebhookURL, MasterKey: a.MasterKey, HookKey: a.HookKey}
		}
	}
	if len(router) > 0 {
		out.Push = core.PushConfig{Provider: router, Templates: templates, Queue: push.QueueConfig{Logger: log.With("part", "push")}}
	}
	return out, nil
}

// Close stops the push providers' workers (APNs, FCM). A core built with
// in closes them itself.
func (in Integrations) Close() {
	if r, ok := in.Push.Provider.(pushRouter); ok {
		r.Close()
	}
}

// Hooks builds the apps' hook client (hooks and user stores); nil when no
// app has either. Cores call the hooks, edges the user stores and
// _rtmClientSign.
func (c *Config) Hooks() *hooks.Client {
	hc := hooks.Config{Apps: map[string]hooks.App{}}
	for _, a := range c.Apps {
		if a.HookBaseURL != "" || len(a.Hooks) > 0 || a.UserVerifyURL != "" {
			p, _ := policy(a.HookPolicy) // checked by LoadConfig
			hc.Apps[a.ID] = hooks.App{URLs: a.Hooks, BaseURL: a.HookBaseURL, MasterKey: a.MasterKey, HookKey: a.HookKey, Policy: p,
				UserVerifyURL: a.UserVerifyURL}
		}
	}
	if len(hc.Apps) == 0 {
		return nil
	}
	return hooks.New(hc)
}
