package probe

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"

	"meridian/config"
)

// identity is the client side of mutual TLS: the CA pool that verifies
// servers and the certificate we present. Both are re-read when their files
// change on disk, so a rotated certificate is used by the next probe without
// a restart. An unchanged file costs one stat per probe, never a re-parse.
type identity struct {
	roots *reloading[*x509.CertPool]   // nil: the system roots
	cert  *reloading[*tls.Certificate] // nil: no client certificate
}

// loadIdentity reads the files once, so that a missing or broken file is a
// configuration error rather than a probe failure.
func loadIdentity(f config.TLSFiles) (*identity, error) {
	id := &identity{}
	if f.CA != "" {
		id.roots = &reloading[*x509.CertPool]{files: []string{f.CA}, parse: parsePool}
		if _, err := id.roots.get(); err != nil {
			return nil, err
		}
	}
	if f.Cert != "" || f.Key != "" {
		id.cert = &reloading[*tls.Certificate]{files: []string{f.Cert, f.Key}, parse: parseKeyPair}
		if _, err := id.cert.get(); err != nil {
			return nil, err
		}
	}
	return id, nil
}

// current returns the CA pool (nil for the system roots) and the client
// certificate (empty when none is configured) to use now. A nil identity
// has neither.
func (id *identity) current() (*x509.CertPool, *tls.Certificate, error) {
	var pool *x509.CertPool
	cert := &tls.Certificate{}
	var err error
	if id == nil {
		return pool, cert, nil
	}
	if id.roots != nil {
		if pool, err = id.roots.get(); err != nil {
			return nil, nil, err
		}
	}
	if id.cert != nil {
		if cert, err = id.cert.get(); err != nil {
			return nil, nil, err
		}
	}
	return pool, cert, nil
}

func parsePool(data [][]byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data[0]) {
		return nil, errors.New("no certificate found")
	}
	return pool, nil
}

func parseKeyPair(data [][]byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(data[0], data[1])
	if err != nil {
		return nil, err
	}
	return &cert, nil
}

// reloading holds a value parsed from a group of files, and parses them
// again when any of them changes (modification time, size or inode). The
// files are read together, so a certificate and its key stay a pair.
//
// While a rotation is half done (the certificate written, the key not yet)
// the parse fails; the last good value keeps being served and the files are
// tried again on the next call. An in-place rewrite of the same size within
// the file system's timestamp granularity (a few milliseconds) can go unseen;
// rotation tools replace files by rename, which always changes the inode.
type reloading[T any] struct {
	files []string
	parse func(data [][]byte) (T, error)

	mu     sync.Mutex
	stamps []os.FileInfo // of the files val was parsed from; nil before the first load
	val    T
}

// get returns the value for the files as they are now.
func (l *reloading[T]) get() (T, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	stamps, err := statAll(l.files)
	if err == nil && sameFiles(stamps, l.stamps) {
		return l.val, nil
	}
	var v T
	if err == nil {
		v, err = l.load()
	}
	if err != nil {
		if l.stamps != nil {
			return l.val, nil // keep the last good value; retry next time
		}
		return v, err
	}
	l.val, l.stamps = v, stamps
	return v, nil
}

// load reads and parses the files.
func (l *reloading[T]) load() (T, error) {
	data := make([][]byte, len(l.files))
	for i, f := range l.files {
		b, err := os.ReadFile(f)
		if err != nil {
			var zero T
			return zero, err
		}
		data[i] = b
	}
	v, err := l.parse(data)
	if err != nil {
		return v, fmt.Errorf("parse %v: %w", l.files, err)
	}
	return v, nil
}

func statAll(files []string) ([]os.FileInfo, error) {
	out := make([]os.FileInfo, len(files))
	for i, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		out[i] = fi
	}
	return out, nil
}

// sameFiles reports whether two stat results describe unchanged files.
func sameFiles(a, b []os.FileInfo) bool {
	if len(a) != len(b) || b == nil {
		return false
	}
	for i := range a {
		if !os.SameFile(a[i], b[i]) || !a[i].ModTime().Equal(b[i].ModTime()) || a[i].Size() != b[i].Size() {
			return false
		}
	}
	return true
}
