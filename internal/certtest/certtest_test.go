package certtest_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"meridian/internal/certtest"
)

func TestServerAndClientTLS(t *testing.T) {
	ca := certtest.New(t)
	other := certtest.New(t)
	noCert := &tls.Config{RootCAs: ca.RootPool()}
	tests := []struct {
		name    string
		server  *tls.Config
		client  *tls.Config
		wantErr bool
	}{
		{"required, given", ca.ServerTLS(t), ca.ClientTLS(t, "probe"), false},
		{"required, missing", ca.ServerTLS(t), noCert, true},
		{"required, other CA", ca.ServerTLS(t), withRoots(other.ClientTLS(t, "x"), ca), true},
		{"optional, given", ca.ServerTLSOptional(t), ca.ClientTLS(t, "probe"), false},
		{"optional, missing", ca.ServerTLSOptional(t), noCert, false},
		{"optional, other CA", ca.ServerTLSOptional(t), withRoots(other.ClientTLS(t, "x"), ca), true},
		{"server from other CA", other.ServerTLS(t), ca.ClientTLS(t, "probe"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := handshake(t, tt.server, tt.client)
			if (err != nil) != tt.wantErr {
				t.Errorf("handshake error %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// withRoots makes a client of one CA trust the server of another.
func withRoots(client *tls.Config, ca *certtest.CA) *tls.Config {
	client.RootCAs = ca.RootPool()
	return client
}

func TestServerTLSNames(t *testing.T) {
	ca := certtest.New(t)
	leaf := ca.ServerTLS(t, "db.internal", "::1").Certificates[0].Leaf
	if !slices.Equal(leaf.DNSNames, []string{"db.internal"}) || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv6loopback) {
		t.Errorf("DNS names %v, IPs %v", leaf.DNSNames, leaf.IPAddresses)
	}
}

func TestFilesAreUniqueAndUsable(t *testing.T) {
	ca := certtest.New(t)
	caFile, cert1, key1 := ca.ClientFiles(t, "probe")
	_, cert2, key2 := ca.ClientFiles(t, "probe")
	_, cert3, key3 := ca.ServerFiles(t)
	if paths := []string{cert1, key1, cert2, key2, cert3, key3}; len(slices.Compact(slices.Sorted(slices.Values(paths)))) != len(paths) {
		t.Fatalf("paths are not unique: %v", paths)
	}
	for _, key := range []string{key1, key2, key3} {
		if info, err := os.Stat(key); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, error %v", key, info.Mode(), err)
		}
	}
	server := serverFromFiles(t, caFile, cert3, key3)
	if err := handshake(t, server, clientFromFiles(t, caFile, cert1, key1)); err != nil {
		t.Errorf("client from files: %v", err)
	}
}

func TestExpiredClientFilesAreRejected(t *testing.T) {
	ca := certtest.New(t)
	caFile, certFile, keyFile := ca.ExpiredClientFiles(t, "late")
	client := clientFromFiles(t, caFile, certFile, keyFile)
	if leaf := client.Certificates[0].Leaf; !leaf.NotAfter.Before(time.Now()) || leaf.Subject.CommonName != "late" {
		t.Fatalf("certificate %v valid until %v", leaf.Subject, leaf.NotAfter)
	}
	err := handshake(t, ca.ServerTLS(t), client)
	var invalid x509.CertificateInvalidError
	if !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("got %v, want an expired certificate error", err)
	}
}

func serverFromFiles(t *testing.T, caFile, certFile, keyFile string) *tls.Config {
	t.Helper()
	cert, pool := loadFiles(t, caFile, certFile, keyFile)
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
}

func clientFromFiles(t *testing.T, caFile, certFile, keyFile string) *tls.Config {
	t.Helper()
	cert, pool := loadFiles(t, caFile, certFile, keyFile)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}
}

func loadFiles(t *testing.T, caFile, certFile, keyFile string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return cert, pool
}

// handshake runs one mutual-TLS handshake over loopback and returns the server's
// error if any, else the client's. The server sends a byte after its handshake so
// the client also learns of a TLS 1.3 rejection.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() { serverErr <- serveOne(ln) }()
	clientErr := dialAndRead(ln.Addr().String(), client)
	if err := <-serverErr; err != nil {
		return err
	}
	return clientErr
}

func serveOne(ln net.Listener) error {
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	tlsConn := conn.(*tls.Conn)
	if err := tlsConn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if err := tlsConn.Handshake(); err != nil {
		return err
	}
	_, err = tlsConn.Write([]byte{1})
	return err
}

func dialAndRead(addr string, config *tls.Config) error {
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: config}
	conn, err := dialer.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}
