package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// adminClient holds the flags every command that reads a node shares:
// where its admin API is and the client certificate to show it.
type adminClient struct {
	addr, ca, cert, key string
	json                bool
}

func (c *adminClient) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "http", "127.0.0.1:9153", "the node's admin address (host:port or URL)")
	fs.StringVar(&c.ca, "ca", "", "CA that signed the admin server's certificate (implies https)")
	fs.StringVar(&c.cert, "cert", "", "client certificate for an admin API that demands one")
	fs.StringVar(&c.key, "key", "", "client certificate's key")
	fs.BoolVar(&c.json, "json", false, "print the raw JSON")
}

// baseURL is the admin API's URL: https when TLS material is given.
func (c *adminClient) baseURL() string {
	if strings.Contains(c.addr, "://") {
		return strings.TrimSuffix(c.addr, "/")
	}
	if c.ca != "" || c.cert != "" {
		return "https://" + c.addr
	}
	return "http://" + c.addr
}

func (c *adminClient) httpClient() (*http.Client, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.ca != "" {
		pem, err := os.ReadFile(c.ca)
		if err != nil {
			return nil, fmt.Errorf("read -ca: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca %s holds no PEM certificate", c.ca)
		}
	}
	if c.cert != "" {
		pair, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, fmt.Errorf("load -cert/-key: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}, nil
}

// get fetches path from the node and decodes its JSON into v; raw is the body.
func (c *adminClient) get(path string, v any) (raw []byte, err error) {
	hc, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	resp, err := hc.Get(c.baseURL() + path)
	if err != nil {
		return nil, fmt.Errorf("ask %s: %w", c.baseURL(), err)
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s%s: %w", c.baseURL(), path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return raw, fmt.Errorf("%s%s: %s: %s", c.baseURL(), path, resp.Status, strings.TrimSpace(string(raw)))
	}
	return raw, json.Unmarshal(raw, v)
}
