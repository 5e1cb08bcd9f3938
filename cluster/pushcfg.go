package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/relaymesh/relaymesh/push"
)

// AppPushConfig is an app's [apps.push] table: device push through APNs
// and FCM (issue 8; docs/OPERATIONS.md "Device push"). It works beside the
// push_provider webhook or log of the same app: each provider gets every
// push request, APNs and FCM send to the devices of their service.
//
//	[apps.push]
//	expiry = "168h"                       # how long APNs/FCM keep a notification (default 7 days)
//	[apps.push.apns]
//	key_file = "AuthKey_ABC123DEFG.p8"     # the team's auth key (token authentication)
//	key_id = "ABC123DEFG"
//	team_id = "TEAM123456"
//	topic = "com.example.chat"             # bundle id, for devices that registered no apnsTopic
//	production = true                      # default; "_profile":"dev" in a payload picks the sandbox
//	# url, sandbox_url, ca_file: another endpoint and CA (a proxy, tests)
//	[apps.push.fcm]
//	service_account_file = "firebase-adminsdk.json"
//	project_id = ""                        # default: the key's project_id
//	# url, token_url, ca_file: likewise
type AppPushConfig struct {
	Expiry string         `toml:"expiry"`
	APNs   *APNsAppConfig `toml:"apns"`
	FCM    *FCMAppConfig  `toml:"fcm"`
}

// APNsAppConfig is [apps.push.apns].
type APNsAppConfig struct {
	KeyFile    string `toml:"key_file"`
	KeyID      string `toml:"key_id"`
	TeamID     string `toml:"team_id"`
	Topic      string `toml:"topic"`
	Production *bool  `toml:"production"`
	URL        string `toml:"url"`
	SandboxURL string `toml:"sandbox_url"`
	CAFile     string `toml:"ca_file"`
}

// FCMAppConfig is [apps.push.fcm].
type FCMAppConfig struct {
	ServiceAccountFile string `toml:"service_account_file"`
	ProjectID          string `toml:"project_id"`
	URL                string `toml:"url"`
	TokenURL           string `toml:"token_url"`
	CAFile             string `toml:"ca_file"`
}

// check validates [apps.push] without reading files.
func (p AppPushConfig) check(app string) error {
	if _, err := p.expiry(); err != nil {
		return fmt.Errorf("%w: app %q: [apps.push] %v", ErrConfig, app, err)
	}
	if a := p.APNs; a != nil {
		if a.KeyFile == "" || a.KeyID == "" || a.TeamID == "" || a.Topic == "" {
			return fmt.Errorf("%w: app %q: [apps.push.apns] needs key_file, key_id, team_id and topic", ErrConfig, app)
		}
	}
	if f := p.FCM; f != nil && f.ServiceAccountFile == "" {
		return fmt.Errorf("%w: app %q: [apps.push.fcm] needs service_account_file", ErrConfig, app)
	}
	return nil
}

func (p AppPushConfig) expiry() (time.Duration, error) {
	if p.Expiry == "" {
		return push.DefaultExpiry, nil
	}
	d, err := time.ParseDuration(p.Expiry)
	if err != nil || d <= 0 || d > 28*24*time.Hour {
		return 0, fmt.Errorf("expiry %q: want a duration up to 672h (FCM's limit)", p.Expiry)
	}
	return d, nil
}

// deviceProviders starts the app's APNs and FCM providers, if any.
func (c *Config) deviceProviders(a AppConfig, log *slog.Logger) ([]namedProvider, error) {
	p := a.Push
	exp, _ := p.expiry() // checked by LoadConfig
	var out []namedProvider
	fail := func(err error) ([]namedProvider, error) {
		for _, np := range out {
			np.close()
		}
		return nil, fmt.Errorf("%w: app %q: %v", ErrConfig, a.ID, err)
	}
	if ac := p.APNs; ac != nil {
		key, err := os.ReadFile(c.Path(ac.KeyFile))
		if err != nil {
			return fail(fmt.Errorf("[apps.push.apns] key_file: %v", err))
		}
		roots, err := c.roots(ac.CAFile)
		if err != nil {
			return fail(fmt.Errorf("[apps.push.apns] ca_file: %v", err))
		}
		cfg := push.APNsConfig{Key: key, KeyID: ac.KeyID, TeamID: ac.TeamID, Topic: ac.Topic,
			Sandbox: ac.Production != nil && !*ac.Production, URL: ac.URL, SandboxURL: ac.SandboxURL, Expiry: exp,
			Logger: log.With("part", "apns", "app", a.ID)}
		if roots != nil {
			cfg.HTTPClient = push.HTTP2Client(roots)
		}
		ap, err := push.NewAPNs(cfg)
		if err != nil {
			return fail(err)
		}
		out = append(out, namedProvider{name: "apns", p: ap})
	}
	if fc := p.FCM; fc != nil {
		sa, err := os.ReadFile(c.Path(fc.ServiceAccountFile))
		if err != nil {
			return fail(fmt.Errorf("[apps.push.fcm] service_account_file: %v", err))
		}
		roots, err := c.roots(fc.CAFile)
		if err != nil {
			return fail(fmt.Errorf("[apps.push.fcm] ca_file: %v", err))
		}
		cfg := push.FCMConfig{ServiceAccount: sa, ProjectID: fc.ProjectID, URL: fc.URL, TokenURL: fc.TokenURL, Expiry: exp,
			Logger: log.With("part", "fcm", "app", a.ID)}
		if roots != nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.TLSClientConfig.RootCAs = roots
			cfg.HTTPClient = &http.Client{Transport: t}
		}
		fp, err := push.NewFCM(cfg)
		if err != nil {
			return fail(err)
		}
		out = append(out, namedProvider{name: "fcm", p: fp})
	}
	return out, nil
}

// roots returns the system roots plus the certificates of file, or nil
// for no file.
func (c *Config) roots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(c.Path(file))
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return pool, nil
}

// namedProvider is one provider of an app, with the name /metrics uses.
type namedProvider struct {
	name string // "apns", "fcm", "webhook", "log"
	p    push.Provider
}

func (np namedProvider) close() {
	if c, ok := np.p.(interface{ Close() }); ok {
		c.Close()
	}
}

func (np namedProvider) stats() push.ProviderStats {
	switch p := np.p.(type) {
	case *push.APNs:
		return p.Stats()
	case *push.FCM:
		return p.Stats()
	case *push.Webhook:
		s := p.Stats()
		return push.ProviderStats{Sent: s.Sent, Failed: s.Failed, Retried: s.Retries}
	}
	return push.ProviderStats{}
}

// pushRouter hands each request to every provider of its app. Read-only
// once built; the core owns it and closes it (Close) after its queue.
type pushRouter map[string][]namedProvider

// Enabled reports whether appID has a provider (core asks before building
// requests).
func (r pushRouter) Enabled(appID string) bool { return len(r[appID]) > 0 }

// Push gives req to the app's providers in turn (APNs and FCM only queue
// it); the error joins theirs.
func (r pushRouter) Push(ctx context.Context, req push.Request) error {
	ps := r[req.AppID]
	if len(ps) == 0 {
		return fmt.Errorf("%w: app %q has no push provider", push.ErrFailed, req.AppID)
	}
	var errs []error
	for _, np := range ps {
		if err := np.p.Push(ctx, req); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", np.name, err))
		}
	}
	return errors.Join(errs...)
}

// ProviderStats sums the providers' counters by name (core /metrics).
func (r pushRouter) ProviderStats() map[string]push.ProviderStats {
	out := map[string]push.ProviderStats{}
	for _, ps := range r {
		for _, np := range ps {
			s := out[np.name]
			s.Add(np.stats())
			out[np.name] = s
		}
	}
	return out
}

// Close stops the device providers' workers.
func (r pushRouter) Close() {
	for _, ps := range r {
		for _, np := range ps {
			np.close()
		}
	}
}
