package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/vipd/vipd/internal/pki"
)

const tlsUsage = `Usage:
  vipd tls ca create [-dir D] [-days N] [-name CN]
  vipd tls cert create -node NAME -ca vipd-ca.pem -ca-key vipd-ca-key.pem [-ip IP …] [-dns NAME …] [-dir D] [-days N]

A small CA and node certificates for clusters without a PKI (Consul's consul tls as the model). Give every
node its certificate with -tls-ca-file vipd-ca.pem -tls-cert-file NAME.pem -tls-key-file NAME-key.pem. Keys
are written mode 0600 and never overwritten; keep vipd-ca-key.pem off the nodes.
`

func runTLS(args []string, stdout io.Writer) error {
	if len(args) < 2 || args[1] != "create" || (args[0] != "ca" && args[0] != "cert") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprint(stdout, tlsUsage)
			return flag.ErrHelp
		}
		return usageError{"vipd tls: want `vipd tls ca create` or `vipd tls cert create -node NAME …` (see vipd tls -h)"}
	}
	if args[0] == "ca" {
		return runTLSCA(args[2:], stdout)
	}
	return runTLSCert(args[2:], stdout)
}

func runTLSCA(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vipd tls ca create", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", ".", "directory to write vipd-ca.pem and vipd-ca-key.pem to")
	days := fs.Int("days", 1825, "validity in days")
	name := fs.String("name", pki.DefaultCAName, "the CA's common name")
	if err := parseTLSFlags(fs, args, stdout); err != nil {
		return err
	}
	if *days < 1 {
		return usageError{"vipd tls ca create: -days must be at least 1"}
	}
	cert, key, err := pki.NewCA(*name, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(*dir, "vipd-ca.pem"), filepath.Join(*dir, "vipd-ca-key.pem")
	if err := pki.WriteFiles(certPath, cert, keyPath, key, false); err != nil {
		return tlsWriteErr("vipd tls ca create", err)
	}
	fmt.Fprintf(stdout, "wrote %s and %s (valid %d days); keep the key off the nodes\n", certPath, keyPath, *days)
	return nil
}

func runTLSCert(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vipd tls cert create", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	node := fs.String("node", "", "the node's -node name: the certificate names it (DNS and vipd:// URI)")
	caFile := fs.String("ca", "vipd-ca.pem", "the CA certificate")
	caKey := fs.String("ca-key", "vipd-ca-key.pem", "the CA key")
	dir := fs.String("dir", ".", "directory to write NODE.pem and NODE-key.pem to")
	days := fs.Int("days", 365, "validity in days (at most the CA's)")
	var ips, dns []string
	fs.Var(&listFlag{dst: &ips}, "ip", "an IP address the certificate also names; repeatable")
	fs.Var(&listFlag{dst: &dns}, "dns", "a DNS name the certificate also names; repeatable")
	if err := parseTLSFlags(fs, args, stdout); err != nil {
		return err
	}
	if !pki.ValidNodeName(*node) {
		return usageError{fmt.Sprintf("vipd tls cert create: -node %q: give the node's name ([A-Za-z0-9._-], 1-63 characters), e.g. -node lb1", *node)}
	}
	if *days < 1 {
		return usageError{"vipd tls cert create: -days must be at least 1"}
	}
	var parsed []net.IP
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return usageError{fmt.Sprintf("vipd tls cert create: -ip %q is not an IP address", s)}
		}
		parsed = append(parsed, ip)
	}
	caCert, err := os.ReadFile(*caFile)
	if err != nil {
		return usageError{fmt.Sprintf("vipd tls cert create: -ca: %v (make one with vipd tls ca create)", err)}
	}
	caKeyPEM, err := os.ReadFile(*caKey)
	if err != nil {
		return usageError{fmt.Sprintf("vipd tls cert create: -ca-key: %v", err)}
	}
	cert, key, err := pki.NewNodeCert(caCert, caKeyPEM, *node, parsed, dns, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return usageError{"vipd tls cert create: " + err.Error()}
	}
	certPath, keyPath := filepath.Join(*dir, *node+".pem"), filepath.Join(*dir, *node+"-key.pem")
	if err := pki.WriteFiles(certPath, cert, keyPath, key, false); err != nil {
		return tlsWriteErr("vipd tls cert create", err)
	}
	fmt.Fprintf(stdout, "wrote %s and %s for node %s (valid %d days)\n", certPath, keyPath, *node, *days)
	return nil
}

func parseTLSFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, tlsUsage+"\nFlags:\n", fs)
			return err
		}
		return usageError{fmt.Sprintf("%s: %v (see vipd tls -h)", fs.Name(), err)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

func tlsWriteErr(cmd string, err error) error {
	if errors.Is(err, pki.ErrExists) {
		return usageError{fmt.Sprintf("%s: %v", cmd, err)}
	}
	return fmt.Errorf("%s: %w", cmd, err)
}
