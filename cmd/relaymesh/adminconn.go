package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/relaymesh/relaymesh/cluster"
	"github.com/relaymesh/relaymesh/mesh"
)

// What every admin command does before its own work: its flag set with
// the flags they all take, the parse, the admin identity and the cores
// to ask (flags over --config), the client and the --timeout deadline;
// and, for the commands that ask every core, the error when none
// answered.

// adminFlags are the flags every admin command takes.
type adminFlags struct {
	config, ca, cert, key, cores, meshAddr string
	json                                   bool
	timeout                                time.Duration
}

func (a *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.config, "config", "", "config file: [tls] (an admin certificate) and [admin] cores")
	fs.StringVar(&a.ca, "ca", "", "cluster CA certificate (instead of --config)")
	fs.StringVar(&a.cert, "cert", "", "admin certificate (relaymesh pki issue --role admin)")
	fs.StringVar(&a.key, "key", "", "admin certificate's key")
	fs.StringVar(&a.cores, "core", "", "comma-separated mesh addresses of cores to ask first")
	fs.StringVar(&a.meshAddr, "mesh-addr", "", "this command's own UDP address (default :0)")
	fs.BoolVar(&a.json, "json", false, "print JSON")
	fs.DurationVar(&a.timeout, "timeout", 30*time.Second, "give up after this long")
}

// dial loads the identity and the cores to ask, from flags over the file.
func (a *adminFlags) dial() (*cluster.OpsClient, error) {
	ca, cert, key, meshAddr := a.ca, a.cert, a.key, a.meshAddr
	var cores []string
	if a.cores != "" {
		for _, c := range strings.Split(a.cores, ",") {
			if c = strings.TrimSpace(c); c != "" {
				cores = append(cores, c)
			}
		}
	}
	if a.config != "" {
		c, err := cluster.LoadConfig(a.config)
		if err != nil {
			return nil, err
		}
		if ca == "" && cert == "" && key == "" {
			ca, cert, key = c.Path(c.TLS.CA), c.Path(c.TLS.Cert), c.Path(c.TLS.Key)
		}
		if len(cores) == 0 {
			cores = c.AdminCores()
		}
		if meshAddr == "" {
			meshAddr = c.Admin.MeshAddr
		}
	}
	if ca == "" || cert == "" || key == "" {
		return nil, errors.New("admin: --config, or --ca, --cert and --key, name the admin certificate")
	}
	if len(cores) == 0 {
		return nil, errors.New("admin: no core to ask: --core ADDR, or [admin] cores in --config")
	}
	if meshAddr == "" {
		meshAddr = ":0"
	}
	id, err := mesh.LoadIdentity(cert, key, ca)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	return cluster.DialOps(id, meshAddr, cores, nil)
}

// connect dials the cores and starts the command's --timeout; release
// cancels the deadline and closes the client.
func (a *adminFlags) connect() (cl *cluster.OpsClient, ctx context.Context, release func(), err error) {
	cl, err = a.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	return cl, ctx, func() { cancel(); cl.Close() }, nil
}

// adminCmd is one admin command's flag set, named for the command
// ("admin status": the name starts its usage and errors), with the
// flags every admin command takes; the command adds its own to fs.
type adminCmd struct {
	adminFlags
	fs *flag.FlagSet
}

func newAdminCmd(name string) *adminCmd {
	c := &adminCmd{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.register(c.fs)
	return c
}

// parse parses args (parseAll) and returns the positionals.
func (c *adminCmd) parse(args []string) ([]string, error) { return parseAll(c.fs, args) }

// parseNone parses args of a command that takes no positionals.
func (c *adminCmd) parseNone(args []string) error {
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%s: unexpected argument %q", c.fs.Name(), pos[0])
	}
	return nil
}

// parseAll parses args, flags and positionals in any order. A bad flag
// is a one-line error; -h prints the flags.
func parseAll(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(os.Stderr)
				fmt.Fprintf(os.Stderr, "Usage of relaymesh %s:\n", fs.Name())
				fs.PrintDefaults()
				return nil, err
			}
			return nil, fmt.Errorf("%s: %w", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// coreAnswer is what noCoreAnswered needs of one core's answer.
type coreAnswer struct {
	answered, refused bool
	err               string
}

// noCoreAnswered is the error of cmd when none of the cores asked
// answered: the first refusal (the certificate is not an admin's says
// more than "no answer"), else "no core answered". Nil when one did.
func noCoreAnswered[N any](cmd string, nodes []N, answer func(N) coreAnswer) error {
	for _, n := range nodes {
		if answer(n).answered {
			return nil
		}
	}
	for _, n := range nodes {
		if a := answer(n); a.refused {
			return fmt.Errorf("%s: %s", cmd, a.err)
		}
	}
	return fmt.Errorf("%s: no core answered", cmd)
}
