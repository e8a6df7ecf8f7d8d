package pki

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// File names Authority.Save writes and LoadAuthority reads.
const (
	RootCertFile         = "root.pem"
	RootKeyFile          = "root.key"
	IntermediateCertFile = "intermediate.pem"
	IntermediateKeyFile  = "intermediate.key"
)

const (
	dirMode  fs.FileMode = 0o700
	certMode fs.FileMode = 0o644
	keyMode  fs.FileMode = 0o600
)

// Save writes the CA certificates and keys to dir (created with mode 0700 if
// missing): root.pem, root.key, intermediate.pem and intermediate.key. Keys get mode
// 0600. root.key is skipped when RootKey is nil. Each file is replaced atomically.
func (a *Authority) Save(dir string) error {
	if err := a.save(dir); err != nil {
		return fmt.Errorf("pki: save authority to %s: %w", dir, err)
	}
	return nil
}

func (a *Authority) save(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, RootCertFile), encodeCerts(a.Root), certMode); err != nil {
		return err
	}
	if a.RootKey != nil {
		if err := writeKey(filepath.Join(dir, RootKeyFile), a.RootKey); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(dir, IntermediateCertFile), encodeCerts(a.Intermediate), certMode); err != nil {
		return err
	}
	return writeKey(filepath.Join(dir, IntermediateKeyFile), a.IntermediateKey)
}

// LoadAuthority reads an Authority written by Save. root.key may be missing (the
// root key kept offline): the Authority can still issue leaves. Issue then uses
// time.Now for defaults.
func LoadAuthority(dir string) (*Authority, error) {
	a, err := loadAuthority(dir)
	if err != nil {
		return nil, fmt.Errorf("pki: load authority from %s: %w", dir, err)
	}
	return a, nil
}

func loadAuthority(dir string) (*Authority, error) {
	a := &Authority{now: time.Now}
	var err error
	a.Root, a.RootKey, err = loadPair(dir, RootCertFile, RootKeyFile)
	if errors.Is(err, fs.ErrNotExist) && a.Root != nil {
		err = nil // root key kept offline
	}
	if err != nil {
		return nil, err
	}
	if a.Intermediate, a.IntermediateKey, err = loadPair(dir, IntermediateCertFile, IntermediateKeyFile); err != nil {
		return nil, err
	}
	if err := a.Intermediate.CheckSignatureFrom(a.Root); err != nil {
		return nil, fmt.Errorf("%s is not signed by %s: %w", IntermediateCertFile, RootCertFile, err)
	}
	return a, nil
}

// loadPair reads a certificate and its key from dir. When only the key is missing it
// returns the certificate and an error matching fs.ErrNotExist.
func loadPair(dir, certName, keyName string) (*x509.Certificate, crypto.Signer, error) {
	cert, err := readCert(filepath.Join(dir, certName))
	if err != nil {
		return nil, nil, err
	}
	key, err := readKey(filepath.Join(dir, keyName))
	if err != nil {
		return cert, nil, err
	}
	if !sameKey(cert.PublicKey, key) {
		return nil, nil, fmt.Errorf("%s does not belong to %s", keyName, certName)
	}
	return cert, key, nil
}

// readCert reads the first certificate of a PEM file.
func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return certs[0], nil
}

// readKey reads the private key in a PEM file.
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return key, nil
}

// Save writes the certificate chain to dir/name.pem (mode 0644) and the key to
// dir/name.key (mode 0600), creating dir with mode 0700 if missing. Existing files
// are replaced atomically.
func (l *Leaf) Save(dir, name string) error {
	if err := l.save(dir, name); err != nil {
		return fmt.Errorf("pki: save certificate %q to %s: %w", name, dir, err)
	}
	return nil
}

func (l *Leaf) save(dir, name string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, name+".pem"), l.CertPEM(), certMode); err != nil {
		return err
	}
	return writeKey(filepath.Join(dir, name+".key"), l.Key)
}

// writeKey writes key in PKCS #8 PEM form with mode 0600.
func writeKey(path string, key crypto.Signer) error {
	data, err := encodeKey(key)
	if err != nil {
		return err
	}
	return writeFile(path, data, keyMode)
}

// writeFile replaces path atomically with data and sets mode exactly (regardless of
// umask). The temporary file is created with mode 0600, so a key is never readable
// by others, not even for a moment.
func writeFile(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
