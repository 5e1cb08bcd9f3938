// Package terraform tests the Terraform under deploy/terraform without a
// terraform binary: every .tf file is parsed with HCL and loaded with
// terraform-config-inspect, and the module's expressions, variable
// validations and templates are evaluated with HCL and go-cty, the libraries
// Terraform's own language is built on, against fixture values. The rendered
// relaymesh config is loaded with cluster.LoadConfig, and the files the boot
// script unpacks are checked by the built binary's `relaymesh core|edge
// --check-config` (checkconfig_test.go), so a drift between the template
// and cluster/config.go fails here.
package terraform

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/terraform-config-inspect/tfconfig"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/relaymesh/relaymesh/apps"
	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/core"
	"github.com/relaymesh/relaymesh/mesh"
)

const (
	moduleDir  = "modules/region"
	exampleDir = "examples/single-region"
)

// --- parsing and loading ---------------------------------------------------------

func tfDirs(t *testing.T) map[string][]string {
	t.Helper()
	dirs := map[string][]string{}
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != "." {
			return filepath.SkipDir // .terraform
		}
		if !d.IsDir() && strings.HasSuffix(p, ".tf") {
			dirs[filepath.Dir(p)] = append(dirs[filepath.Dir(p)], p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{moduleDir, exampleDir} {
		if len(dirs[want]) == 0 {
			t.Fatalf("no .tf files in %s", want)
		}
	}
	return dirs
}

func TestEveryFileParses(t *testing.T) {
	p := hclparse.NewParser()
	for _, files := range tfDirs(t) {
		for _, f := range files {
			if _, diags := p.ParseHCLFile(f); len(diags) > 0 {
				t.Errorf("%s: %s", f, diags.Error())
			}
		}
	}
	tpls, _ := filepath.Glob(filepath.Join(moduleDir, "templates", "*.tftpl"))
	if len(tpls) != 2 {
		t.Fatalf("templates: %v, want relaymesh.toml.tftpl and user-data.sh.tftpl", tpls)
	}
	for _, f := range tpls {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, diags := hclsyntax.ParseTemplate(src, f, hcl.InitialPos); len(diags) > 0 {
			t.Errorf("%s: %s", f, diags.Error())
		}
	}
}

func TestModulesLoad(t *testing.T) {
	for dir := range tfDirs(t) {
		m, diags := tfconfig.LoadModule(dir)
		if len(diags) > 0 {
			t.Errorf("%s: %s", dir, diags.Error())
			continue
		}
		if req := m.RequiredProviders["aws"]; req == nil || req.Source != "hashicorp/aws" || !slices.Contains(req.VersionConstraints, "~> 5.0") {
			t.Errorf("%s: required_providers.aws = %+v, want hashicorp/aws ~> 5.0", dir, req)
		}
	}
}

func TestModuleInterface(t *testing.T) {
	m, diags := tfconfig.LoadModule(moduleDir)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	required := []string{"region", "dns_zone_name", "dns_name", "apps", "ca_cert_pem", "core_certs",
		"edge_cert_pem", "edge_key_pem", "session_token_key_base64"}
	for _, name := range required {
		if v := m.Variables[name]; v == nil || !v.Required {
			t.Errorf("variable %q: want a required variable, got %+v", name, v)
		}
	}
	for name, v := range m.Variables {
		if v.Required && !slices.Contains(required, name) {
			t.Errorf("variable %q is required but not in the documented list", name)
		}
		if v.Description == "" {
			t.Errorf("variable %q has no description", name)
		}
	}
	for _, name := range []string{"vpc_id", "public_subnet_ids", "private_subnet_ids", "edge_instance_type",
		"core_instance_type", "edge_count", "core_count", "core_volume_size_gb", "ami_id",
		"relaymesh_artifact_url", "relaymesh_artifact_sha256", "mesh_port", "client_port", "edge_limits",
		"region_number", "shards", "remote_regions", "node_name_prefix", "webtransport", "wt_cert_pem", "wt_key_pem", "latency_record"} {
		if m.Variables[name] == nil {
			t.Errorf("variable %q missing", name)
		}
	}
	if d := m.Variables["core_count"].Default; d != float64(3) && d != 3 {
		t.Errorf("core_count default = %v, want 3", d)
	}
	if m.Variables["quic_port"] != nil {
		t.Error("variable quic_port: WebTransport rides the client port (443/udp -> client_port/udp)")
	}
	for _, name := range []string{"apps", "ca_cert_pem", "core_certs", "edge_cert_pem", "edge_key_pem", "session_token_key_base64", "wt_cert_pem", "wt_key_pem"} {
		if !m.Variables[name].Sensitive {
			t.Errorf("variable %q must be sensitive", name)
		}
	}
	for _, name := range []string{"rtm_servers", "route_url", "core_private_ips", "core_mesh_addrs", "nlb_dns_name",
		"nlb_zone_id", "edge_dns_name", "region_number", "seed_addrs", "node_cidrs", "private_route_table_ids", "ca_bundle_pem", "mesh", "security_group_ids"} {
		if o := m.Outputs[name]; o == nil || o.Description == "" {
			t.Errorf("output %q missing or undescribed", name)
		}
	}
	for _, r := range []string{"aws_lb.edge", "aws_lb_listener.wss", "aws_lb_target_group.ws", "aws_autoscaling_group.edge",
		"aws_instance.core", "aws_ebs_volume.core", "aws_volume_attachment.core", "aws_route53_record.latency"} {
		if m.ManagedResources[r] == nil {
			t.Errorf("resource %s missing", r)
		}
	}
	// One listener on 443 in both layouts: a second one (UDP beside TLS) is
	// what AWS refuses (DuplicateListener).
	for _, r := range []string{"aws_lb_listener.wt", "aws_lb_target_group.wt"} {
		if m.ManagedResources[r] != nil {
			t.Errorf("resource %s: WebTransport rides the one TCP_UDP listener", r)
		}
	}

	// The example sets every required variable and nothing the module lacks.
	ex := parseDir(t, exampleDir)
	call := ex.block(t, "module", "region")
	if got := evalString(t, call.Body.Attributes["source"].Expr, nil); got != "../../modules/region" {
		t.Errorf("example source = %q", got)
	}
	for name := range call.Body.Attributes {
		if name != "source" && m.Variables[name] == nil {
			t.Errorf("example sets %q, which the module does not declare", name)
		}
	}
	for _, name := range required {
		if call.Body.Attributes[name] == nil {
			t.Errorf("example does not set required %q", name)
		}
	}
}

// --- security groups ---------------------------------------------------------------

func TestSecurityGroupsOpenOnlyIntendedPorts(t *testing.T) {
	m := parseDir(t, moduleDir)
	text := func(b *hclsyntax.Block, name string) string {
		a := b.Body.Attributes[name]
		if a == nil {
			return ""
		}
		return strings.TrimSpace(string(a.Expr.Range().SliceBytes(m.src[a.Expr.Range().Filename])))
	}
	sg := regexp.MustCompile(`^aws_security_group\.(\w+)\.id$`)
	group := func(s string) string {
		if g := sg.FindStringSubmatch(s); g != nil {
			return g[1]
		}
		return "?" + s
	}

	var ingress []string
	for _, b := range m.blocks("resource") {
		typ, name := b.Labels[0], b.Labels[1]
		switch typ {
		case "aws_security_group_rule":
			t.Errorf("%s.%s: use aws_vpc_security_group_*_rule resources", typ, name)
		case "aws_security_group":
			for _, nb := range b.Body.Blocks {
				if nb.Type == "ingress" || nb.Type == "egress" {
					t.Errorf("aws_security_group.%s has an inline %s block", name, nb.Type)
				}
			}
		case "aws_vpc_security_group_ingress_rule":
			from, to := text(b, "from_port"), text(b, "to_port")
			if from != to {
				t.Errorf("ingress %s opens a range %s..%s", name, from, to)
			}
			src := group(text(b, "referenced_security_group_id"))
			if c := text(b, "cidr_ipv4"); c != "" {
				src = "cidr " + c + " of " + text(b, "for_each")
			}
			if text(b, "cidr_ipv6") != "" || text(b, "prefix_list_id") != "" {
				t.Errorf("ingress %s: unexpected source", name)
			}
			ingress = append(ingress, group(text(b, "security_group_id"))+" <- "+src+" "+text(b, "ip_protocol")+"/"+from)
		case "aws_vpc_security_group_egress_rule":
			// The load balancer may only talk to the edges; nodes go out freely.
			if group(text(b, "security_group_id")) == "nlb" && group(text(b, "referenced_security_group_id")) != "edge" {
				t.Errorf("egress %s: the load balancer may only reach the edges", name)
			}
		case "aws_instance", "aws_launch_template", "aws_network_interface", "aws_lb":
			for _, attr := range []string{"vpc_security_group_ids", "security_groups"} {
				if s := text(b, attr); s != "" && !regexp.MustCompile(`^\[aws_security_group\.\w+\.id\]$`).MatchString(s) {
					t.Errorf("%s.%s: %s = %s, want exactly one of the module's groups", typ, name, attr, s)
				}
			}
		}
	}
	slices.Sort(ingress)
	want := []string{
		`core <- cidr each.value of toset(flatten([for r in var.remote_regions : r.node_cidrs])) "udp"/var.mesh_port`,
		`core <- core "udp"/var.mesh_port`,
		`core <- edge "udp"/var.mesh_port`,
		`edge <- nlb "tcp"/var.client_port`,
		`edge <- nlb "udp"/var.client_port`,
		`nlb <- cidr each.value of local.webtransport ? toset(var.allowed_client_cidrs) : toset([]) "udp"/443`,
		`nlb <- cidr each.value of toset(var.allowed_client_cidrs) "tcp"/443`,
	}
	if !slices.Equal(ingress, want) {
		t.Errorf("ingress rules:\n  %s\nwant:\n  %s", strings.Join(ingress, "\n  "), strings.Join(want, "\n  "))
	}
}

// --- variable validations ------------------------------------------------------------

func TestCoreCountMustBeOdd(t *testing.T) {
	e := newEvaluator(t)
	for n, ok := range map[float64]bool{0: false, 1: false, 2: false, 3: true, 4: false, 5: true, 6: false, 7: true} {
		if got := e.valid(t, "core_count", cty.NumberFloatVal(n)); got != ok {
			t.Errorf("core_count = %v: valid = %v, want %v", n, got, ok)
		}
	}
	for n, ok := range map[float64]bool{0: false, 1: true, 2: true, 1.5: false, 40: true} {
		if got := e.valid(t, "edge_count", cty.NumberFloatVal(n)); got != ok {
			t.Errorf("edge_count = %v: valid = %v, want %v", n, got, ok)
		}
	}
}

func TestOtherValidations(t *testing.T) {
	e := newEvaluator(t)
	app := func(id, master string, sig bool) cty.Value {
		return cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal(id), "key": cty.StringVal("k"),
			"master_key": cty.StringVal(master), "signature_required": cty.BoolVal(sig)})
	}
	for _, c := range []struct {
		name string
		val  cty.Value
		ok   bool
	}{
		{"apps", cty.ListVal([]cty.Value{app("a", "m", true)}), true},
		{"apps", cty.ListValEmpty(e.types["apps"].ElementType()), false},
		{"apps", cty.ListVal([]cty.Value{app("a", "m", true), app("a", "n", true)}), false},
		{"apps", cty.ListVal([]cty.Value{app("a", "", true)}), false},
		{"apps", cty.ListVal([]cty.Value{app("a", "", false)}), false}, // no open apps outside relaymesh dev
		{"apps", cty.ListVal([]cty.Value{app(strings.Repeat("x", 65), "m", true)}), false},
		{"relaymesh_artifact_url", cty.StringVal(""), true},
		{"relaymesh_artifact_url", cty.StringVal("https://example.com/relaymesh-v1"), true},
		{"relaymesh_artifact_url", cty.StringVal("http://example.com/relaymesh"), false},
		{"relaymesh_artifact_url", cty.StringVal("https://example.com/x';rm -rf /'"), false},
		{"relaymesh_artifact_sha256", cty.StringVal(strings.Repeat("ab", 32)), true},
		{"relaymesh_artifact_sha256", cty.StringVal("abc"), false},
		{"session_token_key_base64", cty.StringVal(base64.StdEncoding.EncodeToString(make([]byte, 32))), true},
		{"session_token_key_base64", cty.StringVal(base64.StdEncoding.EncodeToString(make([]byte, 16))), false},
		{"architecture", cty.StringVal("arm64"), true},
		{"architecture", cty.StringVal("riscv"), false},
	} {
		if got := e.valid(t, c.name, c.val); got != c.ok {
			t.Errorf("%s = %#v: valid = %v, want %v", c.name, c.val, got, c.ok)
		}
	}
}

// --- rendered node configuration --------------------------------------------------------

func TestRenderedConfigsLoad(t *testing.T) {
	e := newEvaluator(t)

	// Every templatefile call passes exactly the template's variables.
	tplVars := map[string][]string{}
	for _, name := range []string{"relaymesh.toml.tftpl", "user-data.sh.tftpl"} {
		tplVars[name] = templateVariables(t, filepath.Join(moduleDir, "templates", name))
	}
	calls := 0
	for _, body := range e.m.bodies {
		hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
			call, ok := n.(*hclsyntax.FunctionCallExpr)
			if !ok || call.Name != "templatefile" {
				return nil
			}
			calls++
			path := evalString(t, call.Args[0], e.ctx(nil))
			obj, ok := call.Args[1].(*hclsyntax.ObjectConsExpr)
			if !ok {
				t.Errorf("%s: templatefile vars must be an object literal", call.Range())
				return nil
			}
			var keys []string
			for _, item := range obj.Items {
				keys = append(keys, evalString(t, item.KeyExpr, nil))
			}
			slices.Sort(keys)
			if want := tplVars[filepath.Base(path)]; !slices.Equal(keys, want) {
				t.Errorf("%s: templatefile(%s) passes %v, the template uses %v", call.Range(), path, keys, want)
			}
			return nil
		})
	}
	if calls != 4 {
		t.Errorf("found %d templatefile calls, want 4 (core and edge config, core and edge user-data)", calls)
	}

	// Cores: the secret the module stores, unpacked by the boot script's own
	// code, is a config that cluster.LoadConfig and CoreConfig accept.
	peers := map[string]string{}
	for i, n := range e.coreNames {
		peers[n] = e.coreIPs[i] + ":7100"
	}
	for _, n := range e.coreNames {
		dir := e.unpackSecret(t, e.resourceAttr(t, "aws_secretsmanager_secret_version", "core", "secret_string", n), "i-0core")
		c, err := cluster.LoadConfig(filepath.Join(dir, "relaymesh.toml"))
		if err != nil {
			t.Fatalf("%s: %v\n%s", n, err, readFile(t, filepath.Join(dir, "relaymesh.toml")))
		}
		cc, err := c.CoreConfig()
		if err != nil {
			t.Fatalf("%s: CoreConfig: %v", n, err)
		}
		if cc.NodeID != n || cc.MeshAddr != peers[n] || !maps.Equal(cc.Peers, peers) || cc.DataDir != "/var/lib/relaymesh/"+n {
			t.Errorf("%s: core config %s %s %v %s", n, cc.NodeID, cc.MeshAddr, cc.Peers, cc.DataDir)
		}
		if cc.Identity.Name != n {
			t.Errorf("%s: mesh identity %q", n, cc.Identity.Name)
		}
		if cc.Region != 2 || cc.Shards != 4 {
			t.Errorf("%s: region %d shards %d, want 2 and 4", n, cc.Region, cc.Shards)
		}
		wantRemote := []core.RemoteRegion{
			{Number: 1, Cores: []string{"10.43.0.11:7100", "10.43.16.12:7100", "10.43.32.13:7100"}},
			{Number: 3, Cores: []string{"10.44.0.5:7100"}},
		}
		if !slices.EqualFunc(cc.Remote, wantRemote, func(a, b core.RemoteRegion) bool { return a.Number == b.Number && slices.Equal(a.Cores, b.Cores) }) {
			t.Errorf("%s: remote regions %+v, want %+v", n, cc.Remote, wantRemote)
		}
		// The CA bundle: this region's CA and region 1's, each once.
		bundle := readFile(t, filepath.Join(dir, "pki", "ca.crt"))
		if strings.Count(bundle, "BEGIN CERTIFICATE") != 2 || !strings.Contains(bundle, strings.TrimSpace(e.remoteCA)) || !strings.Contains(bundle, strings.TrimSpace(e.caPEM)) {
			t.Errorf("%s: CA bundle holds %d certificates, want this region's and region 1's", n, strings.Count(bundle, "BEGIN CERTIFICATE"))
		}
		if c.Edge.WTCert != "" {
			t.Errorf("%s: a core config carries wt_cert", n)
		}
		if !slices.Equal(c.AppList(), e.wantApps) {
			t.Errorf("%s: apps %+v, want %+v", n, c.AppList(), e.wantApps)
		}
		if c.SessionTokenKeyFile != "" || c.Edge.EdgeID != "" {
			t.Errorf("%s: a core config carries edge settings: %+v", n, c)
		}
	}

	// Edges: same, with the instance id substituted and the shared token key.
	dir := e.unpackSecret(t, e.resourceAttr(t, "aws_secretsmanager_secret_version", "edge", "secret_string", ""), "i-0edge")
	c, err := cluster.LoadConfig(filepath.Join(dir, "relaymesh.toml"))
	if err != nil {
		t.Fatalf("edge: %v\n%s", err, readFile(t, filepath.Join(dir, "relaymesh.toml")))
	}
	ec, err := c.EdgeConfig()
	if err != nil {
		t.Fatalf("edge: EdgeConfig: %v", err)
	}
	wantCores := []string{peers["eu-core-1"], peers["eu-core-2"], peers["eu-core-3"]}
	if ec.EdgeID != "edge-i-0edge" || ec.HTTPAddr != "0.0.0.0:8080" || !slices.Equal(ec.Cores, wantCores) {
		t.Errorf("edge config %s %s %v", ec.EdgeID, ec.HTTPAddr, ec.Cores)
	}
	if want := []string{"wss://im.example.com/", "wss://eu-central-1.im.example.com/"}; !slices.Equal(ec.PublicURLs, want) {
		t.Errorf("public_urls %v, want %v", ec.PublicURLs, want)
	}
	if ec.Identity.Name != "edge-eu-central-1" || len(ec.TokenKey) != 32 || !bytes.Equal(ec.TokenKey, e.tokenKey) {
		t.Errorf("edge identity %q, token key %x", ec.Identity.Name, ec.TokenKey)
	}
	if l := ec.Limits; l.SendsPerMinute != 120 || l.OpsPerMinute != -1 || l.IdleTimeout != 400*time.Second || l.LogsPerMinute != 0 {
		t.Errorf("edge limits %+v", l)
	}
	if !slices.Equal(c.AppList(), e.wantApps) {
		t.Errorf("edge apps %+v, want %+v", c.AppList(), e.wantApps)
	}
	// WebTransport: the certificate the module stored, loaded by the edge.
	if ec.WebTransport == nil || c.Edge.WTCert != "pki/wt.crt" || c.Edge.WTKey != "pki/wt.key" {
		t.Fatalf("edge: WebTransport not configured: wt_cert %q wt_key %q", c.Edge.WTCert, c.Edge.WTKey)
	}
	if got := readFile(t, filepath.Join(dir, "pki", "wt.crt")); got != e.wtCert {
		t.Error("edge: pki/wt.crt is not wt_cert_pem")
	}
	// The one TCP_UDP listener passes TLS through: the edge terminates it on
	// its TCP port with that certificate ([edge] tls).
	if !c.Edge.TLS || !ec.TLS {
		t.Errorf("edge: [edge] tls = %v, EdgeConfig.TLS = %v with WebTransport, want true", c.Edge.TLS, ec.TLS)
	}
	// What a browser gets from that port: a TLS handshake (TLS 1.2, the
	// WebSocket upgrade's HTTP/1.1) with the stored certificate and key,
	// verified for both public names.
	for _, host := range []string{"im.example.com", "eu-central-1.im.example.com"} {
		tlsHandshake(t, ec.WebTransport.TLSConfig(), e.wtCert, host)
	}
	edgeTOML := readFile(t, filepath.Join(dir, "relaymesh.toml"))
	if strings.Count(readFile(t, filepath.Join(dir, "pki", "ca.crt")), "BEGIN CERTIFICATE") != 1 {
		t.Error("edge: the edge's CA file should be this region's CA alone")
	}
	if c.Core.Region != 0 || len(c.Core.RemoteRegions) != 0 {
		t.Errorf("edge config carries core settings: %+v", c.Core)
	}

	// Without wt_cert_pem: no WebTransport, and the file still loads.
	e2 := newEvaluatorWith(t, map[string]cty.Value{"webtransport": cty.NilVal, "wt_cert_pem": cty.NilVal, "wt_key_pem": cty.NilVal})
	dir = e2.unpackSecret(t, e2.resourceAttr(t, "aws_secretsmanager_secret_version", "edge", "secret_string", ""), "i-0edge")
	c, err = cluster.LoadConfig(filepath.Join(dir, "relaymesh.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if ec, err := c.EdgeConfig(); err != nil || ec.WebTransport != nil || ec.TLS || c.Edge.TLS {
		t.Errorf("edge without wt_cert_pem: %v, WebTransport %v, tls %v", err, ec.WebTransport, c.Edge.TLS)
	}
	if strings.Contains(readFile(t, filepath.Join(dir, "relaymesh.toml")), "tls = true") {
		t.Error("edge without WebTransport renders tls = true (the TLS listener terminates TLS)")
	}

	// tls without its certificate is refused: the WebTransport config with
	// wt_cert and wt_key taken out, and tls = true added to the plain one.
	for name, text := range map[string]string{
		"wt_cert removed": regexp.MustCompile(`(?m)^wt_(cert|key) = .*\n`).ReplaceAllString(edgeTOML, ""),
		"tls added":       strings.Replace(readFile(t, filepath.Join(dir, "relaymesh.toml")), "\n[edge]\n", "\n[edge]\ntls = true\n", 1),
	} {
		if !strings.Contains(text, "tls = true") || strings.Contains(text, "wt_cert") {
			t.Fatalf("%s: the edit did not apply:\n%s", name, text)
		}
		f := filepath.Join(dir, "bad.toml")
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := cluster.LoadConfig(f); !errors.Is(err, cluster.ErrConfig) || !strings.Contains(err.Error(), "wt_cert") {
			t.Errorf("%s: LoadConfig = %v, want a config error naming wt_cert", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pki", "wt.crt")); !os.IsNotExist(err) {
		t.Errorf("edge without wt_cert_pem: pki/wt.crt written (%v)", err)
	}
}

func TestUserData(t *testing.T) {
	e := newEvaluator(t)
	core := e.resourceAttr(t, "aws_instance", "core", "user_data", "eu-core-2").AsString()
	b64 := e.resourceAttr(t, "aws_launch_template", "edge", "user_data", "").AsString()
	edgeB, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	edge := string(edgeB)
	for role, script := range map[string]string{"core": core, "edge": edge} {
		for _, want := range []string{
			"#!/bin/bash\n", "ROLE='" + role + "'", "ExecStart=/usr/local/bin/relaymesh $ROLE --config $ETC/relaymesh.toml",
			"systemctl enable --now relaymesh.service", "--secret-id 'arn:aws:secretsmanager:eu-central-1:123456789012:secret:relaymesh/",
			"'https://artifacts.example.com/relaymesh-linux-amd64'", strings.Repeat("ab", 32) + "  /tmp/relaymesh' | sha256sum -c -",
		} {
			if !strings.Contains(script, want) {
				t.Errorf("%s user-data lacks %q", role, want)
			}
		}
		if path, err := exec.LookPath("bash"); err == nil {
			cmd := exec.Command(path, "-n")
			cmd.Stdin = strings.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s user-data: bash -n: %v\n%s", role, err, out)
			}
		}
	}
	if !strings.Contains(core, "nvme-Amazon_Elastic_Block_Store_vol0eucore20000000000") || !strings.Contains(core, "mkfs.xfs") {
		t.Errorf("core user-data does not mount its data volume:\n%s", core)
	}
	if strings.Contains(edge, "mkfs") {
		t.Error("edge user-data formats a volume")
	}
	// An edge reads its secret once, at first boot: a new secret version (a
	// renewed wt_cert_pem, new apps or cores) must change the launch
	// template, so that the instance refresh replaces the edges.
	if !strings.Contains(edge, "Secret version v-edge-0001:") || !strings.Contains(core, "Secret version v-eu-core-2:") {
		t.Error("user-data does not name its secret's version")
	}
	asg := e.m.block(t, "resource", "aws_autoscaling_group", "edge")
	version, refresh := "", false
	for _, b := range asg.Body.Blocks {
		switch b.Type {
		case "launch_template":
			if a := b.Body.Attributes["version"]; a != nil {
				version = string(a.Expr.Range().SliceBytes(e.m.src[a.Expr.Range().Filename]))
			}
		case "instance_refresh":
			refresh = true
		}
	}
	if version != "aws_launch_template.edge.latest_version" || !refresh {
		t.Errorf("edge autoscaling group: launch template version %q, instance refresh %v: a new user-data would not roll the edges", version, refresh)
	}
}

func TestOutputsAndDNS(t *testing.T) {
	e := newEvaluator(t)
	out := func(name string) cty.Value {
		b := e.m.block(t, "output", name)
		v, diags := b.Body.Attributes["value"].Expr.Value(e.ctx(nil))
		if diags.HasErrors() {
			t.Fatalf("output %s: %s", name, diags.Error())
		}
		return v
	}
	if got := out("rtm_servers"); !got.Equals(cty.TupleVal([]cty.Value{cty.StringVal("wss://im.example.com/"), cty.StringVal("wss://eu-central-1.im.example.com/")})).True() {
		t.Errorf("rtm_servers = %#v", got)
	}
	if got := out("route_url"); got.AsString() != "https://im.example.com/v1/route" {
		t.Errorf("route_url = %#v", got)
	}
	if got := out("core_mesh_addrs"); got.LengthInt() != 3 || got.GetAttr("eu-core-1").AsString() != e.coreIPs[0]+":7100" {
		t.Errorf("core_mesh_addrs = %#v", got)
	}

	// What the next region takes: the mesh output, shaped as a
	// remote_regions entry, and valid as one.
	wantSeeds := []string{e.coreIPs[0] + ":7100", e.coreIPs[1] + ":7100", e.coreIPs[2] + ":7100"}
	if got := ctyStrings(t, out("seed_addrs")); !slices.Equal(got, wantSeeds) {
		t.Errorf("seed_addrs = %v, want %v", got, wantSeeds)
	}
	wantCIDRs := []string{"10.42.0.0/20", "10.42.16.0/20", "10.42.32.0/20"}
	if got := ctyStrings(t, out("node_cidrs")); !slices.Equal(got, wantCIDRs) {
		t.Errorf("node_cidrs = %v, want %v", got, wantCIDRs)
	}
	if got := ctyStrings(t, out("private_route_table_ids")); !slices.Equal(got, []string{"rtb-private"}) {
		t.Errorf("private_route_table_ids = %v", got)
	}
	if got := out("region_number"); !got.RawEquals(cty.NumberIntVal(2)) {
		t.Errorf("region_number = %#v", got)
	}
	if got := out("edge_dns_name").AsString(); got != "eu-central-1.im.example.com" {
		t.Errorf("edge_dns_name = %q", got)
	}
	if got := out("nlb_zone_id").AsString(); got != "Z0" {
		t.Errorf("nlb_zone_id = %q", got)
	}
	mesh := out("mesh")
	asRemote, err := convert.Convert(cty.TupleVal([]cty.Value{mesh}), e.types["remote_regions"])
	if err != nil {
		t.Fatalf("output mesh is not a remote_regions entry: %v", err)
	}
	if !e.valid(t, "remote_regions", asRemote) {
		t.Errorf("output mesh fails remote_regions' validation: %#v", mesh)
	}
	if mesh.GetAttr("name").AsString() != "eu-central-1" || !slices.Equal(ctyStrings(t, mesh.GetAttr("seeds")), wantSeeds) ||
		!slices.Equal(ctyStrings(t, mesh.GetAttr("node_cidrs")), wantCIDRs) || mesh.GetAttr("ca_cert_pem").AsString() != e.caPEM {
		t.Errorf("mesh = %#v", mesh)
	}
	if a := e.m.block(t, "output", "ca_bundle_pem").Body.Attributes["sensitive"]; a == nil || !evalValue(t, a.Expr, nil).True() {
		t.Error("output ca_bundle_pem carries a sensitive input: it must be sensitive")
	}
	// mesh feeds the next region's for_each: it must not be sensitive.
	if a := e.m.block(t, "output", "mesh").Body.Attributes["sensitive"]; a != nil {
		t.Error("output mesh must not be sensitive: the next region uses its node_cidrs in for_each")
	}

	// Latency record for the global name, keyed by region, at the load balancer.
	rec := e.m.block(t, "resource", "aws_route53_record", "latency")
	if n := evalValue(t, rec.Body.Attributes["count"].Expr, e.ctx(nil)); !n.RawEquals(cty.NumberIntVal(1)) {
		t.Errorf("latency record count = %#v with latency_record = true", n)
	}
	if n := evalValue(t, rec.Body.Attributes["count"].Expr, newEvaluatorWith(t, map[string]cty.Value{"latency_record": cty.False}).ctx(nil)); !n.RawEquals(cty.NumberIntVal(0)) {
		t.Errorf("latency record count = %#v with latency_record = false", n)
	}
	for _, attr := range []string{"set_identifier", "name"} {
		v := evalString(t, rec.Body.Attributes[attr].Expr, e.ctx(nil))
		if want := map[string]string{"set_identifier": "eu-central-1", "name": "im.example.com"}[attr]; v != want {
			t.Errorf("latency record %s = %q, want %q", attr, v, want)
		}
	}
	var lat, alias *hclsyntax.Block
	for _, b := range rec.Body.Blocks {
		switch b.Type {
		case "latency_routing_policy":
			lat = b
		case "alias":
			alias = b
		}
	}
	if lat == nil || evalString(t, lat.Body.Attributes["region"].Expr, e.ctx(nil)) != "eu-central-1" {
		t.Error("latency record: latency_routing_policy.region must be var.region")
	}
	if alias == nil || !strings.HasPrefix(string(alias.Body.Attributes["name"].Expr.Range().SliceBytes(e.m.src[alias.Body.Attributes["name"].Expr.Range().Filename])), "aws_lb.edge.") {
		t.Error("latency record must alias the edge load balancer")
	}

	// Cores land in three different AZs.
	azs := map[string]bool{}
	for _, s := range e.locals["core_subnet"].AsValueMap() {
		azs[s.GetAttr("az").AsString()] = true
	}
	if len(azs) != 3 {
		t.Errorf("cores span AZs %v, want 3", azs)
	}
}

// --- a small Terraform-like evaluator ------------------------------------------------------

type module struct {
	bodies []*hclsyntax.Body
	src    map[string][]byte
}

func parseDir(t *testing.T, dir string) *module {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	m := &module{src: map[string][]byte{}}
	p := hclparse.NewParser()
	for _, f := range files {
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		m.bodies = append(m.bodies, file.Body.(*hclsyntax.Body))
		m.src[f] = file.Bytes
	}
	return m
}

func (m *module) blocks(typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range m.bodies {
		for _, blk := range b.Blocks {
			if blk.Type == typ {
				out = append(out, blk)
			}
		}
	}
	return out
}

func (m *module) block(t *testing.T, typ string, labels ...string) *hclsyntax.Block {
	t.Helper()
	for _, b := range m.blocks(typ) {
		if slices.Equal(b.Labels, labels) {
			return b
		}
	}
	t.Fatalf("no %s %v", typ, labels)
	return nil
}

type evaluator struct {
	m         *module
	vars      map[string]cty.Value
	types     map[string]cty.Type
	locals    map[string]cty.Value
	refs      map[string]cty.Value // resources and data sources, as after apply
	coreNames []string
	coreIPs   []string
	wantApps  []apps.App
	tokenKey  []byte
	caPEM     string // this region's CA
	remoteCA  string // region 1's CA
	wtCert    string
	wtKey     string
}

func remoteRegion(n int64, name, ca string, seeds, cidrs []string) cty.Value {
	str := func(ss []string) cty.Value {
		var vs []cty.Value
		for _, s := range ss {
			vs = append(vs, cty.StringVal(s))
		}
		return cty.ListVal(vs)
	}
	return cty.ObjectVal(map[string]cty.Value{"number": cty.NumberIntVal(n), "name": cty.StringVal(name),
		"seeds": str(seeds), "ca_cert_pem": cty.StringVal(ca), "node_cidrs": str(cidrs)})
}

// selfSigned makes a WebTransport certificate chain and key (PEM) for hosts.
func selfSigned(t *testing.T, hosts ...string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

var funcs = map[string]function.Function{
	"alltrue":      alltrue,
	"concat":       stdlib.ConcatFunc,
	"flatten":      stdlib.FlattenFunc,
	"join":         stdlib.JoinFunc,
	"split":        stdlib.SplitFunc,
	"tonumber":     stdlib.MakeToFunc(cty.Number),
	"trimspace":    stdlib.TrimSpaceFunc,
	"base64encode": base64encode,
	"can":          tryfunc.CanFunc,
	"coalesce":     stdlib.CoalesceFunc,
	"contains":     stdlib.ContainsFunc,
	"distinct":     stdlib.DistinctFunc,
	"floor":        stdlib.FloorFunc,
	"jsonencode":   stdlib.JSONEncodeFunc,
	"keys":         stdlib.KeysFunc,
	"length":       length,
	"merge":        stdlib.MergeFunc,
	"one":          one,
	"nonsensitive": function.New(&function.Spec{Params: []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType, AllowNull: true}}, Type: func(a []cty.Value) (cty.Type, error) { return a[0].Type(), nil }, Impl: func(a []cty.Value, _ cty.Type) (cty.Value, error) { return a[0], nil }}),
	"range":        stdlib.RangeFunc,
	"regex":        stdlib.RegexFunc,
	"replace":      stdlib.ReplaceFunc,
	"slice":        stdlib.SliceFunc,
	"templatefile": templatefile,
	"toset":        function.New(&function.Spec{Params: []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType}}, Type: func(a []cty.Value) (cty.Type, error) { return cty.Set(cty.String), nil }, Impl: func(a []cty.Value, _ cty.Type) (cty.Value, error) { return convert.Convert(a[0], cty.Set(cty.String)) }}),
	"tostring":     stdlib.MakeToFunc(cty.String),
}

// templateFuncs are the functions the templates may use.
var templateFuncs = map[string]function.Function{"jsonencode": stdlib.JSONEncodeFunc, "replace": stdlib.ReplaceFunc}

// templatefile renders a template as Terraform's templatefile does.
var templatefile = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "path", Type: cty.String}, {Name: "vars", Type: cty.DynamicPseudoType}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		src, err := os.ReadFile(args[0].AsString())
		if err != nil {
			return cty.NilVal, err
		}
		expr, diags := hclsyntax.ParseTemplate(src, args[0].AsString(), hcl.InitialPos)
		if diags.HasErrors() {
			return cty.NilVal, diags
		}
		v, diags := expr.Value(&hcl.EvalContext{Variables: args[1].AsValueMap(), Functions: templateFuncs})
		if diags.HasErrors() {
			return cty.NilVal, diags
		}
		return convert.Convert(v, cty.String)
	},
})

var alltrue = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		for _, v := range args[0].AsValueSlice() {
			if !v.True() {
				return cty.False, nil
			}
		}
		return cty.True, nil
	},
})

// one is Terraform's: null for an empty collection, its element for one
// element, an error for more.
var one = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType}},
	Type: func(a []cty.Value) (cty.Type, error) {
		if ty := a[0].Type(); ty.IsTupleType() && len(ty.TupleElementTypes()) > 0 {
			return ty.TupleElementTypes()[0], nil
		} else if ty.IsListType() || ty.IsSetType() {
			return ty.ElementType(), nil
		}
		return cty.DynamicPseudoType, nil
	},
	Impl: func(a []cty.Value, ty cty.Type) (cty.Value, error) {
		switch n := a[0].LengthInt(); n {
		case 0:
			return cty.NullVal(ty), nil
		case 1:
			return a[0].AsValueSlice()[0], nil
		default:
			return cty.NilVal, fmt.Errorf("one: %d elements", n)
		}
	},
})

var base64encode = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "s", Type: cty.String}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(base64.StdEncoding.EncodeToString([]byte(args[0].AsString()))), nil
	},
})

// length is Terraform's: characters of a string, elements of a collection.
var length = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if args[0].Type() == cty.String {
			return stdlib.Strlen(args[0])
		}
		return cty.NumberIntVal(int64(args[0].LengthInt())), nil
	},
})

func newEvaluator(t *testing.T) *evaluator { return newEvaluatorWith(t, nil) }

// newEvaluatorWith evaluates the module with the fixture's variables, some
// replaced by overrides (cty.NilVal: the variable's default).
func newEvaluatorWith(t *testing.T, overrides map[string]cty.Value) *evaluator {
	t.Helper()
	e := &evaluator{m: parseDir(t, moduleDir), vars: map[string]cty.Value{}, types: map[string]cty.Type{}, locals: map[string]cty.Value{}}
	e.coreNames = []string{"eu-core-1", "eu-core-2", "eu-core-3"}
	e.coreIPs = []string{"10.42.0.11", "10.42.16.12", "10.42.32.13"}

	// Real mesh identities, as `relaymesh pki init/issue` makes them.
	pki := t.TempDir()
	for _, n := range e.coreNames {
		if _, err := mesh.IssueNodeRole(pki, n, mesh.RoleCore, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := mesh.IssueNode(pki, "edge-eu-central-1", nil); err != nil {
		t.Fatal(err)
	}
	// Another region with its own CA, and one sharing ours.
	otherPKI := t.TempDir()
	if _, err := mesh.IssueNodeRole(otherPKI, "us-core-1", mesh.RoleCore, nil); err != nil {
		t.Fatal(err)
	}
	e.remoteCA = readFile(t, filepath.Join(otherPKI, "ca.crt"))
	e.wtCert, e.wtKey = selfSigned(t, "im.example.com", "eu-central-1.im.example.com")
	pemFile := func(f string) cty.Value { return cty.StringVal(readFile(t, filepath.Join(pki, f))) }
	coreCerts := map[string]cty.Value{}
	for _, n := range e.coreNames {
		coreCerts[n] = cty.ObjectVal(map[string]cty.Value{"cert_pem": pemFile(n + ".crt"), "key_pem": pemFile(n + ".key")})
	}
	e.tokenKey = bytes.Repeat([]byte{0xA5, 0x00, 0xFF, 0x3C}, 8) // binary, as pki init writes it

	// Tricky characters, to check the template's TOML quoting.
	tricky := `k"ey\with 'quotes' <&> ü` + "\t"
	fixture := map[string]cty.Value{
		"region":        cty.StringVal("eu-central-1"),
		"dns_zone_name": cty.StringVal("example.com"),
		"dns_name":      cty.StringVal("im.example.com"),
		"apps": cty.TupleVal([]cty.Value{
			cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal("AbCd1234-gzGzoHsz"), "key": cty.StringVal(tricky), "master_key": cty.StringVal("master=" + tricky)}),
			cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal("unsigned-app"), "key": cty.StringVal("k2"), "master_key": cty.StringVal("m2"), "signature_required": cty.False}),
		}),
		"edge_limits":               cty.ObjectVal(map[string]cty.Value{"sends_per_minute": cty.NumberIntVal(120), "ops_per_minute": cty.NumberIntVal(-1), "idle_timeout": cty.StringVal("400s")}),
		"relaymesh_artifact_url":    cty.StringVal("https://artifacts.example.com/relaymesh-linux-amd64"),
		"relaymesh_artifact_sha256": cty.StringVal(strings.Repeat("ab", 32)),
		"ca_cert_pem":               pemFile("ca.crt"),
		"core_certs":                cty.ObjectVal(coreCerts),
		"edge_cert_pem":             pemFile("edge-eu-central-1.crt"),
		"edge_key_pem":              pemFile("edge-eu-central-1.key"),
		"session_token_key_base64":  cty.StringVal(base64.StdEncoding.EncodeToString(e.tokenKey)),
		"region_number":             cty.NumberIntVal(2),
		"shards":                    cty.NumberIntVal(4),
		"node_name_prefix":          cty.StringVal("eu-"),
		"remote_regions": cty.TupleVal([]cty.Value{
			remoteRegion(1, "us-east-1", e.remoteCA, []string{"10.43.0.11:7100", "10.43.16.12:7100", "10.43.32.13:7100"}, []string{"10.43.0.0/20", "10.43.16.0/20", "10.43.32.0/20"}),
			remoteRegion(3, "ap-southeast-1", readFile(t, filepath.Join(pki, "ca.crt")), []string{"10.44.0.5:7100"}, []string{"10.44.0.0/20"}),
		}),
		"webtransport": cty.True,
		"wt_cert_pem":  cty.StringVal(e.wtCert),
		"wt_key_pem":   cty.StringVal(e.wtKey),
	}
	e.caPEM = readFile(t, filepath.Join(pki, "ca.crt"))
	for k, v := range overrides {
		if v == cty.NilVal {
			delete(fixture, k)
		} else {
			fixture[k] = v
		}
	}
	e.wantApps = []apps.App{
		{ID: "AbCd1234-gzGzoHsz", Key: tricky, MasterKey: "master=" + tricky, SignatureRequired: true},
		{ID: "unsigned-app", Key: "k2", MasterKey: "m2"},
	}

	// Variables: fixture or default, optional() defaults applied, converted
	// to the declared type, validations checked: what Terraform does.
	for _, b := range e.m.blocks("variable") {
		name := b.Labels[0]
		ty, defaults, diags := typeexpr.TypeConstraintWithDefaults(b.Body.Attributes["type"].Expr)
		if diags.HasErrors() {
			t.Fatalf("variable %s: %s", name, diags.Error())
		}
		e.types[name] = ty
		v, given := fixture[name]
		if !given {
			d := b.Body.Attributes["default"]
			if d == nil {
				t.Fatalf("fixture lacks required variable %s", name)
			}
			v = evalValue(t, d.Expr, nil)
		}
		if defaults != nil && !v.IsNull() {
			v = defaults.Apply(v)
		}
		cv, err := convert.Convert(v, ty)
		if err != nil {
			t.Fatalf("variable %s: %v", name, err)
		}
		e.vars[name] = cv
	}
	for name := range e.vars {
		if !e.valid(t, name, e.vars[name]) {
			t.Fatalf("fixture value of %s fails its validation", name)
		}
	}

	// Resources and data sources, as after apply.
	byName := func(f func(i int, n string) cty.Value) cty.Value {
		m := map[string]cty.Value{}
		for i, n := range e.coreNames {
			m[n] = f(i, n)
		}
		return cty.ObjectVal(m)
	}
	obj := func(kv ...string) cty.Value {
		m := map[string]cty.Value{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = cty.StringVal(kv[i+1])
		}
		return cty.ObjectVal(m)
	}
	var subnets, public []cty.Value
	for i, az := range []string{"eu-central-1a", "eu-central-1b", "eu-central-1c"} {
		subnets = append(subnets, obj("id", "subnet-"+string(rune('a'+i)), "availability_zone", az, "cidr_block", fmt.Sprintf("10.42.%d.0/20", 16*i)))
		public = append(public, obj("id", "subnet-p"+string(rune('a'+i)), "availability_zone", az, "cidr_block", fmt.Sprintf("10.42.%d.0/24", 240+i)))
	}
	secretARN := "arn:aws:secretsmanager:eu-central-1:123456789012:secret:relaymesh/eu-central-1/"
	// The ACM certificate exists only without WebTransport (count).
	acm := cty.EmptyTupleVal
	if wt := e.vars["webtransport"]; wt.IsNull() || wt.False() {
		acm = cty.TupleVal([]cty.Value{obj("certificate_arn", "arn:acm/edge")})
	}
	e.refs = map[string]cty.Value{
		"path": obj("module", moduleDir),
		"data": cty.ObjectVal(map[string]cty.Value{
			"aws_availability_zones": cty.ObjectVal(map[string]cty.Value{"available": cty.ObjectVal(map[string]cty.Value{
				"names": cty.ListVal([]cty.Value{cty.StringVal("eu-central-1a"), cty.StringVal("eu-central-1b"), cty.StringVal("eu-central-1c")})})}),
			"aws_ssm_parameter": cty.ObjectVal(map[string]cty.Value{"al2023": cty.TupleVal([]cty.Value{obj("insecure_value", "ami-0123")})}),
			"aws_subnet":        cty.ObjectVal(map[string]cty.Value{"private": cty.EmptyTupleVal}), // count = 0 with a new VPC
		}),
		"aws_vpc":         cty.ObjectVal(map[string]cty.Value{"this": cty.TupleVal([]cty.Value{obj("id", "vpc-1")})}),
		"aws_subnet":      cty.ObjectVal(map[string]cty.Value{"private": cty.TupleVal(subnets), "public": cty.TupleVal(public)}),
		"aws_route_table": cty.ObjectVal(map[string]cty.Value{"private": cty.TupleVal([]cty.Value{obj("id", "rtb-private")}), "public": cty.TupleVal([]cty.Value{obj("id", "rtb-public")})}),
		"aws_security_group": cty.ObjectVal(map[string]cty.Value{
			"nlb": obj("id", "sg-nlb"), "edge": obj("id", "sg-edge"), "core": obj("id", "sg-core")}),
		"aws_lb_target_group":            cty.ObjectVal(map[string]cty.Value{"ws": obj("arn", "arn:tg/ws")}),
		"aws_acm_certificate_validation": cty.ObjectVal(map[string]cty.Value{"edge": acm}),
		"aws_secretsmanager_secret_version": cty.ObjectVal(map[string]cty.Value{
			"core": byName(func(i int, n string) cty.Value { return obj("version_id", "v-"+n) }),
			"edge": obj("version_id", "v-edge-0001"),
		}),
		"aws_network_interface": cty.ObjectVal(map[string]cty.Value{"core": byName(func(i int, n string) cty.Value {
			return obj("private_ip", e.coreIPs[i], "id", "eni-"+n)
		})}),
		"aws_ebs_volume": cty.ObjectVal(map[string]cty.Value{"core": byName(func(i int, n string) cty.Value {
			return obj("id", "vol-0"+strings.ReplaceAll(n, "-", "")+"0000000000")
		})}),
		"aws_secretsmanager_secret": cty.ObjectVal(map[string]cty.Value{
			"core": byName(func(i int, n string) cty.Value { return obj("arn", secretARN+n+"-AbCdEf", "id", n) }),
			"edge": obj("arn", secretARN+"edge-AbCdEf", "id", "edge"),
		}),
		"aws_lb": cty.ObjectVal(map[string]cty.Value{"edge": obj("dns_name", "rm-123.elb.eu-central-1.amazonaws.com", "zone_id", "Z0")}),
	}

	// Locals: evaluate until nothing more resolves.
	pending := map[string]hcl.Expression{}
	for _, b := range e.m.blocks("locals") {
		for name, a := range b.Body.Attributes {
			pending[name] = a.Expr
		}
	}
	for progress := true; progress; {
		progress = false
		for name, expr := range pending {
			if v, diags := expr.Value(e.ctx(nil)); !diags.HasErrors() {
				e.locals[name] = v
				delete(pending, name)
				progress = true
			}
		}
	}
	for _, name := range []string{"core_names", "core_mesh_addrs", "core_config", "edge_config", "public_urls", "core_subnet", "ami_id",
		"ca_bundle", "node_cidrs", "private_route_table_ids", "webtransport"} {
		if _, ok := e.locals[name]; !ok {
			_, diags := pending[name].Value(e.ctx(nil))
			t.Fatalf("local.%s does not evaluate: %s", name, diags.Error())
		}
	}
	return e
}

func (e *evaluator) ctx(more map[string]cty.Value) *hcl.EvalContext {
	vars := map[string]cty.Value{"var": cty.ObjectVal(e.vars), "local": cty.ObjectVal(e.locals)}
	maps.Copy(vars, e.refs)
	maps.Copy(vars, more)
	return &hcl.EvalContext{Variables: vars, Functions: funcs}
}

// valid runs the validation blocks of variable name against v.
func (e *evaluator) valid(t *testing.T, name string, v cty.Value) bool {
	t.Helper()
	b := e.m.block(t, "variable", name)
	cv, err := convert.Convert(v, e.types[name])
	if err != nil {
		return false
	}
	vars := maps.Clone(e.vars)
	vars[name] = cv
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}, Functions: funcs}
	ok := true
	found := false
	for _, vb := range b.Body.Blocks {
		if vb.Type != "validation" {
			continue
		}
		found = true
		if vb.Body.Attributes["error_message"] == nil {
			t.Errorf("variable %s: validation without error_message", name)
		}
		r, diags := vb.Body.Attributes["condition"].Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("variable %s: condition: %s", name, diags.Error())
		}
		ok = ok && r.True()
	}
	if !found && slices.Contains([]string{"core_count", "edge_count"}, name) {
		t.Fatalf("variable %s has no validation block", name)
	}
	return ok
}

// resourceAttr evaluates an attribute of a resource, with each.key = key.
func (e *evaluator) resourceAttr(t *testing.T, typ, name, attr, key string) cty.Value {
	t.Helper()
	b := e.m.block(t, "resource", typ, name)
	a := b.Body.Attributes[attr]
	if a == nil {
		t.Fatalf("%s.%s has no %s", typ, name, attr)
	}
	v, diags := a.Expr.Value(e.ctx(map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal(key), "value": cty.StringVal(key)})}))
	if diags.HasErrors() {
		t.Fatalf("%s.%s.%s: %s", typ, name, attr, diags.Error())
	}
	return v
}

// unpackSecret writes a node secret to a directory laid out like
// /etc/relaymesh, with the boot script's own Python code where python3
// exists, and returns the directory.
func (e *evaluator) unpackSecret(t *testing.T, secret cty.Value, instanceID string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "pki"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := readFile(t, filepath.Join(moduleDir, "templates", "user-data.sh.tftpl"))
	start := strings.Index(script, "python3 - <<'PY'\n")
	end := strings.Index(script, "\nPY\n")
	if start < 0 || end < start {
		t.Fatal("user-data: no python3 heredoc")
	}
	py := script[start+len("python3 - <<'PY'\n") : end]
	if python, err := exec.LookPath("python3"); err == nil {
		cmd := exec.Command(python, "-")
		cmd.Stdin = strings.NewReader(py)
		cmd.Env = append(os.Environ(), "SECRET="+secret.AsString(), "INSTANCE_ID="+instanceID, "ETC="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("boot script's python: %v\n%s", err, out)
		}
		return dir
	}
	var s map[string]string
	if err := json.Unmarshal([]byte(secret.AsString()), &s); err != nil {
		t.Fatal(err)
	}
	put := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	put("relaymesh.toml", []byte(strings.ReplaceAll(s["config"], "@INSTANCE_ID@", instanceID)))
	put("pki/ca.crt", []byte(s["ca_crt"]))
	put("pki/node.crt", []byte(s["node_crt"]))
	put("pki/node.key", []byte(s["node_key"]))
	if k := s["session_token_key_b64"]; k != "" {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			t.Fatal(err)
		}
		put("pki/session-token.key", b)
	}
	if s["wt_crt"] != "" {
		put("pki/wt.crt", []byte(s["wt_crt"]))
		put("pki/wt.key", []byte(s["wt_key"]))
	}
	return dir
}

// tlsHandshake runs a TLS handshake against server, configured as the edge
// configures its TCP listener with [edge] tls (cluster/edge.go), with a
// client trusting only certPEM and asking for host.
func tlsHandshake(t *testing.T, server *tls.Config, certPEM, host string) {
	t.Helper()
	server.MinVersion = tls.VersionTLS12
	server.NextProtos = []string{"http/1.1"}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(certPEM)) {
		t.Fatal("wt_cert_pem: no certificate")
	}
	// Loopback TCP, not net.Pipe: a client that gives up sends its alert
	// while the server may still be writing, which an unbuffered pipe deadlocks.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		a, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer a.Close()
		a.SetDeadline(time.Now().Add(30 * time.Second))
		errc <- tls.Server(a, server).Handshake()
	}()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.SetDeadline(time.Now().Add(30 * time.Second))
	cl := tls.Client(b, &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	err = cl.Handshake()
	b.Close() // a client that gave up: the server's handshake fails, not hangs
	serr := <-errc
	if err != nil {
		t.Errorf("TLS 1.2 handshake for %s: %v", host, err)
		return
	}
	if serr != nil {
		t.Errorf("TLS handshake for %s, server side: %v", host, serr)
	}
	if p := cl.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("TLS for %s: ALPN %q, want http/1.1", host, p)
	}
}

// templateVariables lists the root variables a template refers to.
func templateVariables(t *testing.T, path string) []string {
	t.Helper()
	src := readFile(t, path)
	expr, diags := hclsyntax.ParseTemplate([]byte(src), path, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	set := map[string]bool{}
	for _, tr := range expr.Variables() {
		set[tr.RootName()] = true
	}
	return slices.Sorted(maps.Keys(set))
}

func ctyStrings(t *testing.T, v cty.Value) []string {
	t.Helper()
	var out []string
	for _, e := range v.AsValueSlice() {
		out = append(out, e.AsString())
	}
	return out
}

func evalValue(t *testing.T, expr hcl.Expression, ctx *hcl.EvalContext) cty.Value {
	t.Helper()
	v, diags := expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", expr.Range(), diags.Error())
	}
	return v
}

func evalString(t *testing.T, expr hcl.Expression, ctx *hcl.EvalContext) string {
	t.Helper()
	v, err := convert.Convert(evalValue(t, expr, ctx), cty.String)
	if err != nil || v.IsNull() {
		t.Fatalf("%s: not a string: %v", expr.Range(), err)
	}
	return v.AsString()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// --- every variable, reference and module call --------------------------------------

// allDirs are the Terraform directories: the modules and the examples.
var allDirs = []string{moduleDir, "modules/peering", exampleDir, "examples/global"}

// noValidation lists the variables without a validation block, and why.
var noValidation = map[string]string{
	"tags":                      "any map of strings is a valid set of tags",
	"vpc_id":                    "checked by AWS; null creates a VPC",
	"public_subnet_ids":         "checked by AWS",
	"private_subnet_ids":        "checked by AWS",
	"ami_id":                    "checked by AWS",
	"edge_instance_type":        "checked by AWS",
	"core_instance_type":        "checked by AWS",
	"edge_limits":               "typed object; relaymesh checks the values (TestRenderedConfigsLoad)",
	"latency_record":            "a bool",
	"requester_vpc_id":          "an output of the region module",
	"requester_route_table_ids": "an output of the region module",
	"accepter_vpc_id":           "an output of the region module",
	"accepter_route_table_ids":  "an output of the region module",
	// examples: pass-through to the module, validated there
	"apps":                      "validated by the region module (examples pass it through)",
	"relaymesh_artifact_url":    "validated by the region module (examples pass it through)",
	"relaymesh_artifact_sha256": "validated by the region module (examples pass it through)",
	"webtransport":              "a bool",
}

// traversals returns every variable reference in the bodies, with the
// block it sits in (type and labels).
func traversals(m *module) (refs []hcl.Traversal, inVariable map[string][]hcl.Traversal) {
	inVariable = map[string][]hcl.Traversal{}
	for _, body := range m.bodies {
		for _, b := range body.Blocks {
			hclsyntax.VisitAll(b.Body, func(n hclsyntax.Node) hcl.Diagnostics {
				e, ok := n.(hclsyntax.Expression)
				if !ok {
					return nil
				}
				if st, ok := e.(*hclsyntax.ScopeTraversalExpr); ok {
					if b.Type == "variable" {
						inVariable[b.Labels[0]] = append(inVariable[b.Labels[0]], st.Traversal)
					} else {
						refs = append(refs, st.Traversal)
					}
				}
				return nil
			})
		}
	}
	return refs, inVariable
}

func attrName(tr hcl.Traversal, i int) string {
	if len(tr) <= i {
		return ""
	}
	if a, ok := tr[i].(hcl.TraverseAttr); ok {
		return a.Name
	}
	return ""
}

func TestEveryVariableDescribedValidatedUsed(t *testing.T) {
	for _, dir := range allDirs {
		m := parseDir(t, dir)
		refs, inVariable := traversals(m)
		used := map[string]bool{}
		for _, tr := range refs {
			if tr.RootName() == "var" {
				used[attrName(tr, 1)] = true
			}
		}
		vars := m.blocks("variable")
		if len(vars) == 0 {
			t.Errorf("%s declares no variables", dir)
		}
		for _, b := range vars {
			name := b.Labels[0]
			if d := b.Body.Attributes["description"]; d == nil || strings.TrimSpace(evalString(t, d.Expr, nil)) == "" {
				t.Errorf("%s: variable %s has no description", dir, name)
			}
			if b.Body.Attributes["type"] == nil {
				t.Errorf("%s: variable %s has no type", dir, name)
			}
			if !used[name] {
				t.Errorf("%s: variable %s is declared but never used", dir, name)
			}
			nval := 0
			for _, vb := range b.Body.Blocks {
				if vb.Type != "validation" {
					continue
				}
				nval++
				// A condition names its own variable, and only it (Terraform < 1.9).
				self := false
				for _, tr := range inVariable[name] {
					switch root := tr.RootName(); {
					case root == "var" && attrName(tr, 1) == name:
						self = true
					case root == "var" || root == "local" || root == "module" || strings.HasPrefix(root, "aws_") || root == "data":
						t.Errorf("%s: variable %s: validation refers to %s.%s", dir, name, root, attrName(tr, 1))
					}
				}
				if !self {
					t.Errorf("%s: variable %s: a validation that does not look at var.%s", dir, name, name)
				}
				if msg := vb.Body.Attributes["error_message"]; msg == nil || !strings.HasSuffix(evalString(t, msg.Expr, nil), ".") {
					t.Errorf("%s: variable %s: validation without an error_message sentence", dir, name)
				}
			}
			if _, exempt := noValidation[name]; nval == 0 && !exempt {
				t.Errorf("%s: variable %s has no validation block (add one, or say why in noValidation)", dir, name)
			}
		}
	}
}

// Every function the .tf files call is one the tests evaluate, or one they
// never evaluate (file reads, AWS-only values); so a can() around a
// validation never passes or fails because the test lacks a function.
func TestFunctionsKnown(t *testing.T) {
	notEvaluated := map[string]bool{"file": true, "filebase64": true, "cidrsubnet": true,
		"list": true, "map": true, "object": true, "optional": true, "set": true, "tuple": true} // type constraints
	for _, dir := range allDirs {
		m := parseDir(t, dir)
		for _, body := range m.bodies {
			hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
				if c, ok := n.(*hclsyntax.FunctionCallExpr); ok && !notEvaluated[c.Name] {
					if _, ok := funcs[c.Name]; !ok {
						t.Errorf("%s: %s calls %s(), which the test evaluator lacks", dir, c.Range(), c.Name)
					}
				}
				return nil
			})
		}
	}
	for _, tpl := range []string{"relaymesh.toml.tftpl", "user-data.sh.tftpl"} {
		src := readFile(t, filepath.Join(moduleDir, "templates", tpl))
		expr, _ := hclsyntax.ParseTemplate([]byte(src), tpl, hcl.InitialPos)
		hclsyntax.VisitAll(expr.(hclsyntax.Node), func(n hclsyntax.Node) hcl.Diagnostics {
			if c, ok := n.(*hclsyntax.FunctionCallExpr); ok {
				if _, ok := templateFuncs[c.Name]; !ok {
					t.Errorf("%s calls %s(), which the test's templatefile lacks", tpl, c.Name)
				}
			}
			return nil
		})
	}
}

// Every var., local., resource, data source and module output a directory
// refers to exists.
func TestReferencesResolve(t *testing.T) {
	for _, dir := range allDirs {
		m := parseDir(t, dir)
		declared := map[string]bool{}
		outputsOf := map[string]map[string]*tfconfig.Output{}
		for _, b := range m.blocks("variable") {
			declared["var."+b.Labels[0]] = true
		}
		for _, b := range m.blocks("locals") {
			for name := range b.Body.Attributes {
				declared["local."+name] = true
			}
		}
		for _, b := range m.blocks("resource") {
			declared[b.Labels[0]+"."+b.Labels[1]] = true
		}
		for _, b := range m.blocks("data") {
			declared["data."+b.Labels[0]+"."+b.Labels[1]] = true
		}
		for _, b := range m.blocks("module") {
			src := evalString(t, b.Body.Attributes["source"].Expr, nil)
			mod, diags := tfconfig.LoadModule(filepath.Join(dir, src))
			if diags.HasErrors() {
				t.Fatalf("%s: module %s: %s", dir, b.Labels[0], diags.Error())
			}
			outputsOf[b.Labels[0]] = mod.Outputs
		}
		refs, _ := traversals(m)
		for _, tr := range refs {
			root := tr.RootName()
			var key string
			switch {
			case root == "var" || root == "local":
				key = root + "." + attrName(tr, 1)
			case root == "data":
				key = "data." + attrName(tr, 1) + "." + attrName(tr, 2)
			case strings.HasPrefix(root, "aws_"):
				key = root + "." + attrName(tr, 1)
			case root == "module":
				name, out := attrName(tr, 1), attrName(tr, 2)
				outs, ok := outputsOf[name]
				if !ok {
					t.Errorf("%s: %s refers to module %s, which is not called", dir, tr.SourceRange(), name)
				} else if outs[out] == nil {
					t.Errorf("%s: %s refers to module.%s.%s, which that module does not output", dir, tr.SourceRange(), name, out)
				}
				continue
			default:
				continue // path, each, count, self, for-expression symbols
			}
			if !declared[key] {
				t.Errorf("%s: %s refers to %s, which is not declared", dir, tr.SourceRange(), key)
			}
		}
		// Every local is used.
		usedLocals := map[string]bool{}
		for _, tr := range refs {
			if tr.RootName() == "local" {
				usedLocals[attrName(tr, 1)] = true
			}
		}
		for k := range declared {
			if name, ok := strings.CutPrefix(k, "local."); ok && !usedLocals[name] {
				t.Errorf("%s: local.%s is never used", dir, name)
			}
		}
	}
}

// Every module call passes only variables the module declares, every
// required one, and exactly the providers it asks for.
func TestModuleCallsWired(t *testing.T) {
	calls := 0
	for _, dir := range allDirs {
		m := parseDir(t, dir)
		for _, b := range m.blocks("module") {
			calls++
			src := evalString(t, b.Body.Attributes["source"].Expr, nil)
			mod, diags := tfconfig.LoadModule(filepath.Join(dir, src))
			if diags.HasErrors() {
				t.Fatalf("%s: module %s: %s", dir, b.Labels[0], diags.Error())
			}
			for name := range b.Body.Attributes {
				if name != "source" && name != "providers" && mod.Variables[name] == nil {
					t.Errorf("%s: module %s sets %q, which %s does not declare", dir, b.Labels[0], name, src)
				}
			}
			for name, v := range mod.Variables {
				if v.Required && b.Body.Attributes[name] == nil {
					t.Errorf("%s: module %s does not set required %q", dir, b.Labels[0], name)
				}
			}
			// providers = { aws.x = aws.y }: the keys are the module's aliases.
			var want []string
			if req := mod.RequiredProviders["aws"]; req != nil {
				for _, a := range req.ConfigurationAliases {
					want = append(want, a.Name+"."+a.Alias)
				}
			}
			var got []string
			if p := b.Body.Attributes["providers"]; p != nil {
				obj, ok := p.Expr.(*hclsyntax.ObjectConsExpr)
				if !ok {
					t.Fatalf("%s: module %s: providers is not an object", dir, b.Labels[0])
				}
				for _, item := range obj.Items {
					k := strings.TrimSpace(string(item.KeyExpr.Range().SliceBytes(m.src[item.KeyExpr.Range().Filename])))
					got = append(got, k)
					v, ok := item.ValueExpr.(*hclsyntax.ScopeTraversalExpr)
					if !ok || v.Traversal.RootName() != "aws" || !declaredProviderAlias(t, m, attrName(v.Traversal, 1)) {
						t.Errorf("%s: module %s: provider %s is not one of this directory's aliased aws providers", dir, b.Labels[0], k)
					}
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if len(want) > 0 && !slices.Equal(got, want) {
				t.Errorf("%s: module %s passes providers %v, the module wants %v", dir, b.Labels[0], got, want)
			}
		}
	}
	if calls != 1+3+3 {
		t.Errorf("found %d module calls, want 7 (single-region: 1; global: 3 regions, 3 peerings)", calls)
	}
}

func declaredProviderAlias(t *testing.T, m *module, alias string) bool {
	t.Helper()
	for _, b := range m.blocks("provider") {
		if a := b.Body.Attributes["alias"]; a != nil && evalString(t, a.Expr, nil) == alias {
			return true
		}
	}
	return false
}

// --- security groups and listeners, evaluated ---------------------------------------

// instances evaluates a resource's count or for_each and returns the
// each/count scope of every instance.
func (e *evaluator) instances(t *testing.T, b *hclsyntax.Block) []map[string]cty.Value {
	t.Helper()
	if a := b.Body.Attributes["count"]; a != nil {
		n, _ := evalValue(t, a.Expr, e.ctx(nil)).AsBigFloat().Int64()
		var out []map[string]cty.Value
		for i := range n {
			out = append(out, map[string]cty.Value{"count": cty.ObjectVal(map[string]cty.Value{"index": cty.NumberIntVal(i)})})
		}
		return out
	}
	if a := b.Body.Attributes["for_each"]; a != nil {
		v := evalValue(t, a.Expr, e.ctx(nil))
		var out []map[string]cty.Value
		for it := v.ElementIterator(); it.Next(); {
			k, val := it.Element()
			if v.Type().IsSetType() {
				k = val
			}
			out = append(out, map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{"key": k, "value": val})})
		}
		return out
	}
	return []map[string]cty.Value{nil}
}

func (e *evaluator) attr(t *testing.T, b *hclsyntax.Block, name string, scope map[string]cty.Value) cty.Value {
	t.Helper()
	a := b.Body.Attributes[name]
	if a == nil {
		return cty.NullVal(cty.DynamicPseudoType)
	}
	return evalValue(t, a.Expr, e.ctx(scope))
}

// ingress lists every ingress rule the module creates with its variables:
// "group <- source proto/port".
func (e *evaluator) ingress(t *testing.T) []string {
	t.Helper()
	group := func(v cty.Value) string { return strings.TrimPrefix(v.AsString(), "sg-") }
	var out []string
	for _, b := range e.m.blocks("resource") {
		if b.Labels[0] != "aws_vpc_security_group_ingress_rule" {
			continue
		}
		for _, scope := range e.instances(t, b) {
			from, to := e.attr(t, b, "from_port", scope), e.attr(t, b, "to_port", scope)
			if !from.RawEquals(to) {
				t.Errorf("ingress %s opens a range", b.Labels[1])
			}
			src := "?"
			if c := e.attr(t, b, "cidr_ipv4", scope); !c.IsNull() {
				src = c.AsString()
			} else if g := e.attr(t, b, "referenced_security_group_id", scope); !g.IsNull() {
				src = "sg " + group(g)
			}
			port, _ := from.AsBigFloat().Int64()
			out = append(out, fmt.Sprintf("%s <- %s %s/%d", group(e.attr(t, b, "security_group_id", scope)), src,
				e.attr(t, b, "ip_protocol", scope).AsString(), port))
		}
	}
	slices.Sort(out)
	return out
}

// The ingress rules, evaluated: 443/tcp and 443/udp from the internet to
// the load balancer, the client port from the load balancer to the edges,
// the mesh port from this region's nodes and the other regions' node CIDRs
// to the cores. Nothing else.
func TestIngressRulesEvaluated(t *testing.T) {
	for _, c := range []struct {
		name      string
		overrides map[string]cty.Value
		want      []string
	}{
		{"three regions, WebTransport", nil, []string{
			"core <- 10.43.0.0/20 udp/7100",
			"core <- 10.43.16.0/20 udp/7100",
			"core <- 10.43.32.0/20 udp/7100",
			"core <- 10.44.0.0/20 udp/7100",
			"core <- sg core udp/7100",
			"core <- sg edge udp/7100",
			"edge <- sg nlb tcp/8080",
			"edge <- sg nlb udp/8080",
			"nlb <- 0.0.0.0/0 tcp/443",
			"nlb <- 0.0.0.0/0 udp/443",
		}},
		{"one region, no WebTransport, two client networks, other ports", map[string]cty.Value{
			"remote_regions": cty.NilVal, "webtransport": cty.NilVal, "wt_cert_pem": cty.NilVal, "wt_key_pem": cty.NilVal,
			"allowed_client_cidrs": cty.ListVal([]cty.Value{cty.StringVal("192.0.2.0/24"), cty.StringVal("198.51.100.0/24")}),
			"client_port":          cty.NumberIntVal(9000), "mesh_port": cty.NumberIntVal(7200),
		}, []string{
			"core <- sg core udp/7200",
			"core <- sg edge udp/7200",
			"edge <- sg nlb tcp/9000",
			"nlb <- 192.0.2.0/24 tcp/443",
			"nlb <- 198.51.100.0/24 tcp/443",
		}},
	} {
		e := newEvaluatorWith(t, c.overrides)
		if got := e.ingress(t); !slices.Equal(got, c.want) {
			t.Errorf("%s: ingress rules:\n  %s\nwant:\n  %s", c.name, strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
		}
	}
}

// The load balancer has exactly one listener, on 443, to exactly one target
// group on the edges' client port. Without WebTransport (as before): TLS
// with the ACM certificate to a TCP group checked with HTTP /readyz. With
// it: TCP_UDP passed through to a TCP_UDP group (AWS: a TCP_UDP listener
// forwards only to one) checked with HTTPS /readyz (the port speaks TLS;
// AWS allows no UDP or TCP_UDP health check), no certificate on the load
// balancer and no ACM certificate at all. Never a second listener on 443:
// AWS refuses one (DuplicateListener).
func TestListenersEvaluated(t *testing.T) {
	noWT := map[string]cty.Value{"webtransport": cty.NilVal, "wt_cert_pem": cty.NilVal, "wt_key_pem": cty.NilVal}
	for _, c := range []struct {
		name      string
		overrides map[string]cty.Value
		listeners []string
		groups    []string
		cert      string // the listener's certificate_arn, "" for null
		policy    string
		acm       int64 // ACM certificates (and validations)
		egress    []string
	}{
		{"WebTransport", nil,
			[]string{"wss 443/TCP_UDP -> arn:tg/ws"},
			[]string{"arn:tg/ws TCP_UDP/8080 health HTTPS traffic-port /readyz 200"},
			"", "", 0,
			[]string{"nlb -> sg edge tcp/8080", "nlb -> sg edge udp/8080"}},
		{"no WebTransport", noWT,
			[]string{"wss 443/TLS -> arn:tg/ws"},
			[]string{"arn:tg/ws TCP/8080 health HTTP traffic-port /readyz 200"},
			"arn:acm/edge", "ELBSecurityPolicy-TLS13-1-2-2021-06", 1,
			[]string{"nlb -> sg edge tcp/8080"}},
		{"WebTransport, client port 9443", map[string]cty.Value{"client_port": cty.NumberIntVal(9443)},
			[]string{"wss 443/TCP_UDP -> arn:tg/ws"},
			[]string{"arn:tg/ws TCP_UDP/9443 health HTTPS traffic-port /readyz 200"},
			"", "", 0,
			[]string{"nlb -> sg edge tcp/9443", "nlb -> sg edge udp/9443"}},
	} {
		e := newEvaluatorWith(t, c.overrides)
		str := func(v cty.Value) string {
			if v.IsNull() {
				return ""
			}
			if v.Type() == cty.Number {
				n, _ := v.AsBigFloat().Int64()
				return fmt.Sprint(n)
			}
			return v.AsString()
		}
		var groups, listeners, egress []string
		certs, policies := map[string]bool{}, map[string]bool{}
		for _, b := range e.m.blocks("resource") {
			switch b.Labels[0] {
			case "aws_lb_target_group":
				for _, scope := range e.instances(t, b) {
					var hc *hclsyntax.Block
					for _, nb := range b.Body.Blocks {
						if nb.Type == "health_check" {
							hc = nb
						}
					}
					if hc == nil {
						t.Fatalf("target group %s has no health_check", b.Labels[1])
					}
					h := func(a string) string { return str(e.attr(t, hc, a, scope)) }
					groups = append(groups, fmt.Sprintf("arn:tg/%s %s/%s health %s %s %s %s", b.Labels[1],
						str(e.attr(t, b, "protocol", scope)), str(e.attr(t, b, "port", scope)), h("protocol"), h("port"), h("path"), h("matcher")))
				}
			case "aws_lb_listener":
				for _, scope := range e.instances(t, b) {
					var action *hclsyntax.Block
					for _, nb := range b.Body.Blocks {
						if nb.Type == "default_action" {
							action = nb
						}
					}
					target := evalString(t, action.Body.Attributes["target_group_arn"].Expr, e.ctx(scope))
					// Named, and without count: the same listener in both
					// layouts, modified in place when webtransport flips.
					if b.Body.Attributes["count"] != nil || b.Body.Attributes["for_each"] != nil {
						t.Errorf("listener %s has count or for_each: flipping webtransport would add a listener on 443 beside the old one", b.Labels[1])
					}
					listeners = append(listeners, fmt.Sprintf("%s %s/%s -> %s", b.Labels[1], str(e.attr(t, b, "port", scope)), str(e.attr(t, b, "protocol", scope)), target))
					certs[str(e.attr(t, b, "certificate_arn", scope))] = true
					policies[str(e.attr(t, b, "ssl_policy", scope))] = true
				}
			case "aws_vpc_security_group_egress_rule":
				for _, scope := range e.instances(t, b) {
					if strings.TrimPrefix(str(e.attr(t, b, "security_group_id", scope)), "sg-") != "nlb" {
						continue
					}
					egress = append(egress, fmt.Sprintf("nlb -> sg %s %s/%s", strings.TrimPrefix(str(e.attr(t, b, "referenced_security_group_id", scope)), "sg-"),
						str(e.attr(t, b, "ip_protocol", scope)), str(e.attr(t, b, "from_port", scope))))
				}
			}
		}
		slices.Sort(groups)
		slices.Sort(listeners)
		slices.Sort(egress)
		if !slices.Equal(listeners, c.listeners) {
			t.Errorf("%s: listeners %v, want %v", c.name, listeners, c.listeners)
		}
		if !slices.Equal(groups, c.groups) {
			t.Errorf("%s: target groups %v, want %v", c.name, groups, c.groups)
		}
		if !maps.Equal(certs, map[string]bool{c.cert: true}) || !maps.Equal(policies, map[string]bool{c.policy: true}) {
			t.Errorf("%s: listener certificate %v, ssl policy %v, want %q and %q", c.name, certs, policies, c.cert, c.policy)
		}
		if !slices.Equal(egress, c.egress) {
			t.Errorf("%s: load balancer egress %v, want %v", c.name, egress, c.egress)
		}
		for _, r := range []string{"aws_acm_certificate", "aws_acm_certificate_validation"} {
			if n := len(e.instances(t, e.m.block(t, "resource", r, "edge"))); int64(n) != c.acm {
				t.Errorf("%s: %d %s, want %d", c.name, n, r, c.acm)
			}
		}
		// The edges register with that one group, and nothing else.
		if got := ctyStrings(t, e.resourceAttr(t, "aws_autoscaling_group", "edge", "target_group_arns", "")); !slices.Equal(got, []string{"arn:tg/ws"}) {
			t.Errorf("%s: edge autoscaling group target groups %v", c.name, got)
		}
	}
}

// --- bad values ------------------------------------------------------------------------

func TestBadValuesFailValidation(t *testing.T) {
	e := newEvaluator(t)
	good := e.vars["remote_regions"].AsValueSlice()
	ca := e.caPEM
	rr := func(rs ...cty.Value) cty.Value { return cty.TupleVal(rs) }
	for _, c := range []struct {
		name string
		val  cty.Value
		ok   bool
	}{
		{"region_number", cty.NumberIntVal(1), true},
		{"region_number", cty.NumberIntVal(255), true},
		{"region_number", cty.NumberIntVal(0), false},
		{"region_number", cty.NumberIntVal(256), false},
		{"region_number", cty.NumberFloatVal(1.5), false},
		{"shards", cty.NumberIntVal(256), true},
		{"shards", cty.NumberIntVal(0), false},
		{"shards", cty.NumberIntVal(257), false},
		{"node_name_prefix", cty.StringVal(""), true},
		{"node_name_prefix", cty.StringVal("eu-"), true},
		{"node_name_prefix", cty.StringVal("eu"), false},
		{"node_name_prefix", cty.StringVal("EU-"), false},
		{"remote_regions", rr(), true},
		{"remote_regions", rr(good[0]), true},
		{"remote_regions", rr(good[0], good[0]), false}, // a number twice
		{"remote_regions", rr(remoteRegion(0, "x", ca, []string{"10.0.0.1:7100"}, []string{"10.0.0.0/16"})), false},
		{"remote_regions", rr(remoteRegion(256, "x", ca, []string{"10.0.0.1:7100"}, []string{"10.0.0.0/16"})), false},
		{"remote_regions", rr(remoteRegion(4, "x", ca, []string{"core-1.example.com:7100"}, []string{"10.0.0.0/16"})), false},
		{"remote_regions", rr(remoteRegion(4, "x", ca, []string{"10.0.0.1"}, []string{"10.0.0.0/16"})), false},
		{"remote_regions", rr(remoteRegion(4, "x", ca, []string{"10.0.0.1:7100"}, []string{"0.0.0.0/0"})), false}, // the mesh open to all
		{"remote_regions", rr(remoteRegion(4, "x", ca, []string{"10.0.0.1:7100"}, []string{"10.0.0.0"})), false},
		{"remote_regions", rr(remoteRegion(4, "x", "not a pem", []string{"10.0.0.1:7100"}, []string{"10.0.0.0/16"})), false},
		{"remote_regions", rr(remoteRegion(4, "X Y", ca, []string{"10.0.0.1:7100"}, []string{"10.0.0.0/16"})), false},
		{"client_port", cty.NumberIntVal(8080), true},
		{"client_port", cty.NumberIntVal(443), false}, // privileged: the edges run as a user
		{"client_port", cty.NumberIntVal(70000), false},
		{"mesh_port", cty.NumberIntVal(0), false},
		{"allowed_client_cidrs", cty.ListVal([]cty.Value{cty.StringVal("203.0.113.0/24")}), true},
		{"allowed_client_cidrs", cty.ListVal([]cty.Value{cty.StringVal("everyone")}), false},
		{"allowed_client_cidrs", cty.ListValEmpty(cty.String), false},
		{"vpc_cidr", cty.StringVal("10.43.0.0/16"), true},
		{"vpc_cidr", cty.StringVal("10.43.0.0/24"), false},
		{"vpc_cidr", cty.StringVal("10.43.0.0"), false},
		{"wt_cert_pem", cty.NullVal(cty.String), true},
		{"wt_cert_pem", cty.StringVal("hello"), false},
		{"wt_key_pem", cty.StringVal(e.wtCert), false},
		{"ca_cert_pem", cty.StringVal(""), false},
		{"region", cty.StringVal("eu-central-1"), true},
		{"region", cty.StringVal("Frankfurt"), false},
		{"dns_name", cty.StringVal("im.example.com."), false},
		{"core_volume_type", cty.StringVal("st1"), false},
		{"name", cty.StringVal("relaymesh-with-a-very-long-name"), false},
	} {
		if got := e.valid(t, c.name, c.val); got != c.ok {
			t.Errorf("%s = %#v: valid = %v, want %v", c.name, c.val, got, c.ok)
		}
	}
}

// --- the config keys relaymesh accepts ------------------------------------------------

// A template that renders a key relaymesh does not know is refused by
// cluster.LoadConfig (it is strict: unknown keys are an error), and so is
// the catalog-voters key the global example deliberately does not render.
func TestConfigKeysRefused(t *testing.T) {
	e := newEvaluator(t)
	// Load the module's own rendering first: the mutations below are the
	// only difference.
	render := func(t *testing.T, mutate func(string) string) (*cluster.Config, error) {
		t.Helper()
		tmp := t.TempDir()
		if err := os.Mkdir(filepath.Join(tmp, "templates"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"relaymesh.toml.tftpl", "user-data.sh.tftpl"} {
			src := readFile(t, filepath.Join(moduleDir, "templates", name))
			if name == "relaymesh.toml.tftpl" {
				src2 := mutate(src)
				if src2 == src {
					t.Fatal("the mutation changed nothing: the template changed, update the test")
				}
				src = src2
			}
			if err := os.WriteFile(filepath.Join(tmp, "templates", name), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var expr hcl.Expression
		for _, b := range e.m.blocks("locals") {
			if a := b.Body.Attributes["core_config"]; a != nil {
				expr = a.Expr
			}
		}
		refs := maps.Clone(e.refs)
		refs["path"] = cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(tmp)})
		ctx := e.ctx(nil)
		maps.Copy(ctx.Variables, refs)
		cfg := evalValue(t, expr, ctx).GetAttr(e.coreNames[0]).AsString()
		f := filepath.Join(tmp, "relaymesh.toml")
		if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return cluster.LoadConfig(f)
	}
	if _, err := render(t, func(s string) string { return s + "\n" }); err != nil {
		t.Fatalf("the module's own template: %v", err)
	}
	for _, c := range []struct {
		name   string
		mutate func(string) string
	}{
		{"shard_count instead of shards", func(s string) string { return strings.Replace(s, "shards = ${shards}", "shard_count = ${shards}", 1) }},
		{"remote_regions seeds key", func(s string) string {
			return strings.Replace(s, "cores = ${jsonencode(r.seeds)}", "seeds = ${jsonencode(r.seeds)}", 1)
		}},
		{"catalog_voters under [core]", func(s string) string {
			return strings.Replace(s, "shards = ${shards}\n", "shards = ${shards}\ncatalog_voters = [\"eu-core-1\", \"us-core-1\", \"ap-core-1\"]\n", 1)
		}},
		{"a top-level key", func(s string) string { return strings.Replace(s, "data = ", "datadir = ", 1) }},
	} {
		_, err := render(t, c.mutate)
		if err == nil || !errors.Is(err, cluster.ErrConfig) || !strings.Contains(err.Error(), "unknown keys") {
			t.Errorf("%s: LoadConfig = %v, want an unknown-keys error", c.name, err)
		}
	}
	// And a value relaymesh refuses: a remote region numbered like this one.
	cfg, err := render(t, func(s string) string {
		return strings.Replace(s, "number = ${r.number}", "number = ${region_number}", 1)
	})
	if err != nil {
		t.Fatalf("same-number remote region: LoadConfig: %v", err)
	}
	if _, err := cfg.CoreConfig(); err == nil || !strings.Contains(err.Error(), "remote_regions") {
		t.Errorf("a remote region with this region's number: CoreConfig = %v, want a remote_regions error", err)
	}
	// The templates never render a catalog key.
	if strings.Contains(readFile(t, filepath.Join(moduleDir, "templates", "relaymesh.toml.tftpl")), "catalog") {
		t.Error("relaymesh.toml.tftpl mentions the catalog: relaymesh has no such key")
	}
}

// --- examples/global ------------------------------------------------------------------

func TestGlobalExample(t *testing.T) {
	g := parseDir(t, "examples/global")
	e := newEvaluator(t) // the region module, for its validations
	src := func(expr hcl.Expression) string {
		return strings.TrimSpace(string(expr.Range().SliceBytes(g.src[expr.Range().Filename])))
	}

	providerRegion := map[string]string{} // alias -> AWS region
	for _, b := range g.blocks("provider") {
		providerRegion[evalString(t, b.Body.Attributes["alias"].Expr, nil)] = evalString(t, b.Body.Attributes["region"].Expr, nil)
	}
	regions := []string{"eu", "us", "ap"}
	if len(providerRegion) != 3 {
		t.Fatalf("providers %v, want three aliases", providerRegion)
	}
	// No default provider is configured: every resource and data source
	// names one of the aliases.
	for _, typ := range []string{"resource", "data"} {
		for _, b := range g.blocks(typ) {
			p := b.Body.Attributes["provider"]
			if p == nil {
				t.Errorf("%s %v: no provider (the example configures only aliased ones)", typ, b.Labels)
				continue
			}
			if tr, ok := p.Expr.(*hclsyntax.ScopeTraversalExpr); !ok || tr.Traversal.RootName() != "aws" || providerRegion[attrName(tr.Traversal, 1)] == "" {
				t.Errorf("%s %v: provider %s is not one of the aliases", typ, b.Labels, src(p.Expr))
			}
		}
	}

	numbers, cidrs, prefixes := map[string]bool{}, map[string]bool{}, map[string]bool{}
	awsRegionOf := map[string]string{}
	for _, r := range regions {
		call := g.block(t, "module", r)
		a := call.Body.Attributes
		if got := evalString(t, a["source"].Expr, nil); got != "../../modules/region" {
			t.Errorf("module %s: source %q", r, got)
		}
		if got := src(a["providers"].Expr); got != "{ aws = aws."+r+" }" {
			t.Errorf("module %s: providers = %s, want { aws = aws.%s }", r, got, r)
		}
		region := evalString(t, a["region"].Expr, nil)
		awsRegionOf[r] = region
		if region != providerRegion[r] {
			t.Errorf("module %s: region %q, its provider's %q", r, region, providerRegion[r])
		}
		for _, name := range []string{"region", "region_number", "node_name_prefix", "vpc_cidr"} {
			v := evalValue(t, a[name].Expr, nil)
			if !e.valid(t, name, v) {
				t.Errorf("module %s: %s = %#v fails the module's validation", r, name, v)
			}
		}
		numbers[evalValue(t, a["region_number"].Expr, nil).AsBigFloat().String()] = true
		cidrs[evalString(t, a["vpc_cidr"].Expr, nil)] = true
		prefix := evalString(t, a["node_name_prefix"].Expr, nil)
		prefixes[prefix] = true
		if prefix != r+"-" {
			t.Errorf("module %s: node_name_prefix %q, want %q (the pki commands in the header)", r, prefix, r+"-")
		}
		if !evalValue(t, a["latency_record"].Expr, nil).False() {
			t.Errorf("module %s: latency_record must be false: the example declares the records", r)
		}
		// remote_regions: the mesh output of every other region, once.
		list, ok := a["remote_regions"].Expr.(*hclsyntax.TupleConsExpr)
		if !ok {
			t.Fatalf("module %s: remote_regions is not a list literal", r)
		}
		var got, want []string
		for _, item := range list.Exprs {
			got = append(got, src(item))
		}
		for _, o := range regions {
			if o != r {
				want = append(want, "module."+o+".mesh")
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("module %s: remote_regions %v, want %v", r, got, want)
		}
	}
	if len(numbers) != 3 || !numbers["1"] || !numbers["2"] || !numbers["3"] || len(cidrs) != 3 || len(prefixes) != 3 {
		t.Errorf("region numbers %v, VPC CIDRs %v, prefixes %v: want 1, 2, 3 and distinct CIDRs and prefixes", numbers, cidrs, prefixes)
	}

	// Peering: every pair once, each side's provider and region consistent.
	pairs := map[string]bool{}
	for _, b := range g.blocks("module") {
		if evalString(t, b.Body.Attributes["source"].Expr, nil) != "../../modules/peering" {
			continue
		}
		a := b.Body.Attributes
		ps := src(a["providers"].Expr)
		m := regexp.MustCompile(`^\{ aws\.requester = aws\.(\w+), aws\.accepter = aws\.(\w+) \}$`).FindStringSubmatch(ps)
		if m == nil {
			t.Fatalf("peering %s: providers %s", b.Labels[0], ps)
		}
		req, acc := m[1], m[2]
		pairs[req+"-"+acc] = true
		if got := evalString(t, a["accepter_region"].Expr, nil); got != providerRegion[acc] {
			t.Errorf("peering %s: accepter_region %q, its provider's %q", b.Labels[0], got, providerRegion[acc])
		}
		for arg, want := range map[string]string{
			"requester_vpc_id": "module." + req + ".vpc_id", "requester_route_table_ids": "module." + req + ".private_route_table_ids",
			"requester_cidrs": "module." + req + ".node_cidrs", "accepter_vpc_id": "module." + acc + ".vpc_id",
			"accepter_route_table_ids": "module." + acc + ".private_route_table_ids", "accepter_cidrs": "module." + acc + ".node_cidrs",
		} {
			if got := src(a[arg].Expr); got != want {
				t.Errorf("peering %s: %s = %s, want %s", b.Labels[0], arg, got, want)
			}
		}
	}
	if len(pairs) != 3 || !pairs["eu-us"] || !pairs["eu-ap"] || !pairs["us-ap"] {
		t.Errorf("peerings %v, want eu-us, eu-ap, us-ap", pairs)
	}

	// Locals, with the modules' outputs stubbed.
	mods := map[string]cty.Value{}
	for _, r := range regions {
		mods[r] = cty.ObjectVal(map[string]cty.Value{"nlb_dns_name": cty.StringVal(r + ".elb.amazonaws.com"), "nlb_zone_id": cty.StringVal("Z" + r)})
	}
	ctx := &hcl.EvalContext{Functions: funcs, Variables: map[string]cty.Value{
		"module": cty.ObjectVal(mods), "path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(".")}),
		"var": cty.ObjectVal(map[string]cty.Value{"webtransport": cty.False}),
	}}
	locals := map[string]cty.Value{}
	for _, b := range g.blocks("locals") {
		for _, name := range []string{"regions", "catalog_voters", "dns_name", "dns_zone_name"} {
			if a := b.Body.Attributes[name]; a != nil {
				locals[name] = evalValue(t, a.Expr, ctx)
			}
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)

	// Latency records: one name, one record per region, at its load balancer.
	rec := g.block(t, "resource", "aws_route53_record", "edge")
	if got := src(rec.Body.Attributes["for_each"].Expr); got != "local.regions" {
		t.Fatalf("latency records: for_each = %s", got)
	}
	seen := map[string]bool{}
	for it := locals["regions"].ElementIterator(); it.Next(); {
		k, v := it.Element()
		each := map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{"key": k, "value": v})}
		ectx := ctx.NewChild()
		ectx.Variables = each
		a := rec.Body.Attributes
		if evalString(t, a["name"].Expr, ectx) != "im.example.com" || evalString(t, a["type"].Expr, ectx) != "A" {
			t.Errorf("latency record %s: name or type", k.AsString())
		}
		if got := evalString(t, a["set_identifier"].Expr, ectx); got != k.AsString() {
			t.Errorf("latency record %s: set_identifier %q", k.AsString(), got)
		}
		var lat, alias *hclsyntax.Block
		for _, nb := range rec.Body.Blocks {
			switch nb.Type {
			case "latency_routing_policy":
				lat = nb
			case "alias":
				alias = nb
			}
		}
		if lat == nil || evalString(t, lat.Body.Attributes["region"].Expr, ectx) != k.AsString() {
			t.Errorf("latency record %s: latency_routing_policy.region must be its AWS region", k.AsString())
		}
		var short string
		for r, aws := range awsRegionOf {
			if aws == k.AsString() {
				short = r
			}
		}
		if alias == nil || evalString(t, alias.Body.Attributes["name"].Expr, ectx) != short+".elb.amazonaws.com" ||
			evalString(t, alias.Body.Attributes["zone_id"].Expr, ectx) != "Z"+short {
			t.Errorf("latency record %s: alias must be that region's load balancer", k.AsString())
		}
		seen[k.AsString()] = true
	}
	if len(seen) != 3 {
		t.Errorf("latency records for %v, want the three regions", seen)
	}

	// Catalog voters: one core of each region.
	var voters []string
	for _, v := range locals["catalog_voters"].AsValueSlice() {
		voters = append(voters, v.AsString())
	}
	if !slices.Equal(voters, []string{"eu-core-1", "us-core-1", "ap-core-1"}) {
		t.Errorf("catalog voters %v", voters)
	}
}

// preconditions evaluates the precondition blocks of a resource.
func (e *evaluator) preconditions(t *testing.T, typ, name string) bool {
	t.Helper()
	ok := true
	for _, b := range e.m.block(t, "resource", typ, name).Body.Blocks {
		if b.Type != "lifecycle" {
			continue
		}
		for _, p := range b.Body.Blocks {
			if p.Type == "precondition" {
				ok = ok && evalValue(t, p.Body.Attributes["condition"].Expr, e.ctx(nil)).True()
			}
		}
	}
	return ok
}

func TestWebTransportNeedsItsCertificate(t *testing.T) {
	e := newEvaluator(t)
	null := cty.NullVal(cty.String)
	for _, c := range []struct {
		wt        bool
		cert, key cty.Value
		ok        bool
	}{
		{true, cty.StringVal(e.wtCert), cty.StringVal(e.wtKey), true},
		{false, null, null, true},
		{true, null, null, false},
		{true, cty.StringVal(e.wtCert), null, false},
		{false, cty.StringVal(e.wtCert), cty.StringVal(e.wtKey), false},
	} {
		e := newEvaluatorWith(t, map[string]cty.Value{"webtransport": cty.BoolVal(c.wt), "wt_cert_pem": c.cert, "wt_key_pem": c.key})
		if got := e.preconditions(t, "aws_secretsmanager_secret_version", "edge"); got != c.ok {
			t.Errorf("webtransport %v, cert %v, key %v: preconditions hold = %v, want %v", c.wt, !c.cert.IsNull(), !c.key.IsNull(), got, c.ok)
		}
	}
}

// Terraform refuses sensitive values (and values derived from them) in
// count and for_each: no count or for_each may reach a sensitive variable,
// directly or through locals.
func TestNoSensitiveCountOrForEach(t *testing.T) {
	for _, dir := range allDirs {
		m := parseDir(t, dir)
		sensitive := map[string]bool{}
		for _, b := range m.blocks("variable") {
			if a := b.Body.Attributes["sensitive"]; a != nil && evalValue(t, a.Expr, nil).True() {
				sensitive[b.Labels[0]] = true
			}
		}
		localExpr := map[string]hcl.Expression{}
		for _, b := range m.blocks("locals") {
			for name, a := range b.Body.Attributes {
				localExpr[name] = a.Expr
			}
		}
		// reaches returns the sensitive variable expr depends on, if any.
		var reaches func(expr hcl.Expression, seen map[string]bool) string
		reaches = func(expr hcl.Expression, seen map[string]bool) string {
			for _, tr := range expr.Variables() {
				switch tr.RootName() {
				case "var":
					if n := attrName(tr, 1); sensitive[n] {
						return n
					}
				case "local":
					n := attrName(tr, 1)
					if !seen[n] && localExpr[n] != nil {
						seen[n] = true
						if v := reaches(localExpr[n], seen); v != "" {
							return v
						}
					}
				}
			}
			return ""
		}
		for _, typ := range []string{"resource", "data", "module"} {
			for _, b := range m.blocks(typ) {
				for _, attr := range []string{"count", "for_each"} {
					if a := b.Body.Attributes[attr]; a != nil {
						if v := reaches(a.Expr, map[string]bool{}); v != "" {
							t.Errorf("%s: %s %v: %s depends on the sensitive var.%s", dir, typ, b.Labels, attr, v)
						}
					}
				}
			}
		}
	}
}

// A mesh of many regions: 254 others (every number but this region's),
// each with several seeds and CIDRs, validates, renders, and loads.
func TestManyRemoteRegions(t *testing.T) {
	base := newEvaluator(t)
	var rs []cty.Value
	for n := int64(1); n <= 255; n++ {
		if n == 2 {
			continue // this region
		}
		seeds := []string{fmt.Sprintf("10.%d.0.11:7100", n), fmt.Sprintf("10.%d.16.12:7100", n), fmt.Sprintf("10.%d.32.13:7100", n)}
		rs = append(rs, remoteRegion(n, fmt.Sprintf("r%d", n), base.remoteCA, seeds, []string{fmt.Sprintf("10.%d.0.0/18", n)}))
	}
	e := newEvaluatorWith(t, map[string]cty.Value{"remote_regions": cty.TupleVal(rs)})
	if !e.valid(t, "remote_regions", e.vars["remote_regions"]) {
		t.Fatal("254 remote regions fail validation")
	}
	dir := e.unpackSecret(t, e.resourceAttr(t, "aws_secretsmanager_secret_version", "core", "secret_string", e.coreNames[0]), "i-0core")
	c, err := cluster.LoadConfig(filepath.Join(dir, "relaymesh.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.CoreConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(cc.Remote) != 254 || cc.Remote[253].Number != 255 || len(cc.Remote[0].Cores) != 3 {
		t.Errorf("remote regions: %d, last %+v", len(cc.Remote), cc.Remote[len(cc.Remote)-1])
	}
	if got := len(e.ingress(t)); got != 254+6 {
		t.Errorf("%d ingress rules, want 254 remote CIDRs + the 6 of one region", got)
	}
	if !e.preconditions(t, "aws_secretsmanager_secret_version", "core") {
		t.Error("254 remote regions: the cores' preconditions fail")
	}
	// 255 regions is one too many: a number would repeat or leave 1..255.
	over := append(slices.Clone(rs), remoteRegion(2, "self", base.remoteCA, []string{"10.2.0.1:7100"}, []string{"10.2.0.0/18"}))
	e2 := newEvaluatorWith(t, map[string]cty.Value{"remote_regions": cty.TupleVal(over)})
	if e2.preconditions(t, "aws_secretsmanager_secret_version", "core") {
		t.Error("a remote region numbered like this one passes the module's preconditions")
	}
	dir = e2.unpackSecret(t, e2.resourceAttr(t, "aws_secretsmanager_secret_version", "core", "secret_string", e2.coreNames[0]), "i-0core")
	c, err = cluster.LoadConfig(filepath.Join(dir, "relaymesh.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreConfig(); err == nil {
		t.Error("a remote region numbered like this one: CoreConfig accepted it")
	}
}

// modules/peering gets only aws.requester and aws.accepter: every resource
// names one, routes of each side with that side's provider.
func TestPeeringProviders(t *testing.T) {
	m := parseDir(t, "modules/peering")
	want := map[string]string{
		"aws_vpc_peering_connection.this": "aws.requester", "aws_vpc_peering_connection_accepter.this": "aws.accepter",
		"aws_route.to_accepter": "aws.requester", "aws_route.to_requester": "aws.accepter",
	}
	got := map[string]string{}
	for _, b := range m.blocks("resource") {
		p := b.Body.Attributes["provider"]
		if p == nil {
			t.Errorf("%s.%s has no provider", b.Labels[0], b.Labels[1])
			continue
		}
		got[b.Labels[0]+"."+b.Labels[1]] = strings.TrimSpace(string(p.Expr.Range().SliceBytes(m.src[p.Expr.Range().Filename])))
	}
	if !maps.Equal(got, want) {
		t.Errorf("providers %v, want %v", got, want)
	}
}
