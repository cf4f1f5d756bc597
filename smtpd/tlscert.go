package smtpd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certificate file names used by LoadOrCreateCert.
const (
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
)

// selfSignedValidity is how long a generated certificate is valid. SMTP
// clients rarely verify certificates of MX hosts, and an expired
// certificate on a failover node nobody looks at would be worse.
const selfSignedValidity = 10 * 365 * 24 * time.Hour

// LoadOrCreateCert loads dir/cert.pem and dir/key.pem, or, when neither
// exists, generates a self-signed ECDSA P-256 certificate for hostname,
// writes both files (mode 0600, via a temporary file, fsync and rename) and
// returns it. If only one of the two files exists it fails rather than
// overwrite an operator's file.
func LoadOrCreateCert(dir, hostname string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	_, cerr := os.Stat(certPath)
	_, kerr := os.Stat(keyPath)
	switch {
	case cerr == nil && kerr == nil:
		c, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("smtpd: load certificate: %w", err)
		}
		return c, nil
	case !errors.Is(cerr, os.ErrNotExist) && cerr != nil:
		return tls.Certificate{}, fmt.Errorf("smtpd: %w", cerr)
	case !errors.Is(kerr, os.ErrNotExist) && kerr != nil:
		return tls.Certificate{}, fmt.Errorf("smtpd: %w", kerr)
	case cerr == nil || kerr == nil:
		return tls.Certificate{}, fmt.Errorf("smtpd: only one of %s and %s exists in %s", CertFile, KeyFile, dir)
	}
	certPEM, keyPEM, err := selfSigned(hostname)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("smtpd: %w", err)
	}
	// The key first: a crash between the two leaves no cert.pem, and the
	// next start fails loudly instead of pairing a new cert with an old key.
	if err := writeSecret(keyPath, keyPEM); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeSecret(certPath, certPEM); err != nil {
		return tls.Certificate{}, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("smtpd: generated certificate: %w", err)
	}
	return c, nil
}

// selfSigned returns a PEM certificate and PKCS#8 key for hostname.
func selfSigned(hostname string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("smtpd: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("smtpd: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"mxcont self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(hostname); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else if hostname != "" {
		tmpl.DNSNames = []string{hostname}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("smtpd: create certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("smtpd: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), nil
}

// writeSecret writes a 0600 file durably: temporary file, fsync, rename,
// directory fsync.
func writeSecret(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("smtpd: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("smtpd: write %s: %w", path, err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("smtpd: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("smtpd: sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}
