package actor_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// writeTestCerts writes a self-signed CA and a certificate it signs for
// 127.0.0.1 (server and client use) to dir; it returns the file names.
func writeTestCerts(t *testing.T, dir string) (certFile, keyFile, caFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "troupe test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "troupe test member"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)

	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600))
		return p
	}
	return write("member.pem", "CERTIFICATE", der), write("member.key", "EC PRIVATE KEY", keyDER), write("ca.pem", "CERTIFICATE", caDER)
}

// Must show: two members talk over TLS (mutual, with a certificate made by
// the test), and a member without TLS can't talk to them: its commands
// for their streams fail and write nothing.
func TestClusterTLS(t *testing.T) {
	dsn, pool := clusterDB(t)
	cert, key, ca := writeTestCerts(t, t.TempDir())
	ms := startCluster(t, dsn, memberSpec{
		n: 3,
		args: func(i int) []string {
			if i == 2 { // plaintext, gives up fast
				return []string{"-retry-attempts", "3", "-request-timeout", "500ms"}
			}
			return []string{"-tls-cert", cert, "-tls-key", key, "-tls-ca", ca}
		},
		// The TLS members list each other only; the plaintext one lists
		// all three.
		group: func(i int) []int {
			if i == 2 {
				return []int{0, 1, 2}
			}
			return []int{0, 1}
		},
	})
	a, b, plain := ms[0], ms[1], ms[2]
	ctx := context.Background()
	ownedBy := func(m *member, viewer *member, prefix string) string {
		for i := 0; ; i++ {
			s := fmt.Sprintf("%s%d", prefix, i)
			if viewer.owner("", s) == m.addr {
				return s
			}
		}
	}
	for _, tc := range []struct{ via, owner *member }{{a, b}, {b, a}} {
		s := ownedBy(tc.owner, tc.via, "tls-")
		rep, err := tc.via.send(ctx, clusterSend{Stream: s, By: 2, CommandID: "tls-1"})
		require.NoError(t, err)
		require.Empty(t, rep.Error, "send over TLS from %s to %s", tc.via.addr, tc.owner.addr)
		require.EqualValues(t, 1, rep.Version)
		require.Equal(t, 2, rep.Count)
		require.Equal(t, 1, tc.owner.activations()[identity(s)])
	}

	s := ownedBy(a, plain, "plain-")
	start := time.Now()
	rep, err := plain.send(ctx, clusterSend{Stream: s, CommandID: "plain-1"})
	require.NoError(t, err)
	require.NotEmpty(t, rep.Error, "a member without TLS reached a TLS member")
	t.Logf("plaintext member to TLS member: %q after %v", rep.Error, time.Since(start).Round(time.Millisecond))
	require.Zero(t, a.activations()[identity(s)])
	require.Zero(t, commandCounts(t, pool)["plain-1"])
}
