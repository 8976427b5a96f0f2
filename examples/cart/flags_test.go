package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRequestTimeoutAndPoolFlags(t *testing.T) {
	t.Parallel()
	o, err := parseFlags(nil, io.Discard, env(nil))
	require.NoError(t, err)
	require.Equal(t, 10*time.Second, o.requestTimeout)
	require.Equal(t, 20, o.maxConns)

	o, err = parseFlags(nil, io.Discard, env(map[string]string{"REQUEST_TIMEOUT": "3s", "DB_MAX_CONNS": "7"}))
	require.NoError(t, err)
	require.Equal(t, 3*time.Second, o.requestTimeout)
	require.Equal(t, 7, o.maxConns)

	o, err = parseFlags([]string{"-request-timeout=250ms", "-db-max-conns=40"}, io.Discard,
		env(map[string]string{"REQUEST_TIMEOUT": "3s", "DB_MAX_CONNS": "7"}))
	require.NoError(t, err, "flags win over the environment")
	require.Equal(t, 250*time.Millisecond, o.requestTimeout)
	require.Equal(t, 40, o.maxConns)

	for _, bad := range []struct {
		args []string
		env  map[string]string
	}{
		{nil, map[string]string{"REQUEST_TIMEOUT": "soon"}},
		{nil, map[string]string{"REQUEST_TIMEOUT": "-1s"}},
		{nil, map[string]string{"DB_MAX_CONNS": "0"}},
		{nil, map[string]string{"DB_MAX_CONNS": "many"}},
		{[]string{"-request-timeout=0s"}, nil},
		{[]string{"-db-max-conns=-3"}, nil},
	} {
		_, err := parseFlags(bad.args, io.Discard, env(bad.env))
		require.ErrorIs(t, err, errUsage, "%v %v", bad.args, bad.env)
	}
}

func TestClusterFlags(t *testing.T) {
	t.Parallel()
	o, err := parseFlags(nil, io.Discard, env(nil))
	require.NoError(t, err)
	require.False(t, o.cluster.enabled(), "one process by default")

	o, err = parseFlags(nil, io.Discard, env(map[string]string{"CLUSTER_NAME": "shop", "CLUSTER_ADDR": "127.0.0.1:7001",
		"CLUSTER_MEMBERS": "127.0.0.1:7101, 127.0.0.1:7102,127.0.0.1:7103", "CLUSTER_HEALTH": "127.0.0.1:7102"}))
	require.NoError(t, err)
	require.Equal(t, clusterOptions{name: "shop", addr: "127.0.0.1:7001", health: "127.0.0.1:7102",
		members: []string{"127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"}}, o.cluster)

	o, err = parseFlags([]string{"-cluster-name=b", "-cluster-addr=10.0.0.5:7000", "-cluster-advertise=shop-1:7000"}, io.Discard,
		env(map[string]string{"CLUSTER_NAME": "a", "CLUSTER_ADDR": "127.0.0.1:1"}))
	require.NoError(t, err, "flags win over the environment")
	require.Equal(t, clusterOptions{name: "b", addr: "10.0.0.5:7000", advertise: "shop-1:7000"}, o.cluster)
	cfg, info, err := joinCluster(clusterOptions{name: "b", addr: "127.0.0.1:7000", members: []string{"127.0.0.1:7100"},
		health: "127.0.0.1:7100"}, nil, nil)
	require.NoError(t, err)
	require.Equal(t, "b", cfg.Name)
	require.Equal(t, "127.0.0.1:7000", cfg.Address)
	require.NotNil(t, cfg.Provider)
	require.Nil(t, cfg.TLS)
	require.Equal(t, `member 127.0.0.1:7000 of "b" (static members 127.0.0.1:7100, health on 127.0.0.1:7100, plaintext between members)`, info)

	for _, bad := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-cluster-name=a"}, nil, "needs -cluster-addr"},
		{[]string{"-cluster-addr=127.0.0.1:7000"}, nil, "need -cluster-name"},
		{nil, map[string]string{"CLUSTER_MEMBERS": "127.0.0.1:7000"}, "need -cluster-name"},
		{[]string{"-cluster-name=a", "-cluster-addr=127.0.0.1:7000", "-cluster-members=127.0.0.1:7100"}, nil, "go together"},
		{[]string{"-cluster-name=a", "-cluster-addr=127.0.0.1:7000", "-cluster-members=127.0.0.1:7100", "-cluster-health=127.0.0.1:7101"}, nil, "the list holds"},
		{[]string{"-cluster-name=a", "-cluster-addr=7000"}, nil, `cluster address "7000": want host:port`},
		{[]string{"-cluster-name=a", "-cluster-addr=127.0.0.1:7000", "-cluster-members=127.0.0.1", "-cluster-health=127.0.0.1"}, nil, "want host:port"},
		{[]string{"-cluster-name=a", "-cluster-addr=127.0.0.1:7000", "-cluster-tls-cert=c.pem"}, nil, "go together"},
		{[]string{"-cluster-name=a", "-cluster-addr=127.0.0.1:7000", "-store=memory"}, nil, "needs -store=postgres"},
		{[]string{"-cluster-name=a", "-cluster-addr=127.0.0.1:7000", "-demo"}, nil, "start their own members"},
		{[]string{"-demo", "-cluster-demo"}, nil, "not both"},
		{[]string{"-cluster-demo", "-store=memory"}, nil, "needs -store=postgres"},
	} {
		var errOut syncBuffer
		_, err := parseFlags(bad.args, &errOut, env(bad.env))
		require.ErrorIs(t, err, errUsage, "%v %v", bad.args, bad.env)
		require.Contains(t, errOut.String(), bad.want, "%v %v", bad.args, bad.env)
	}
}

// The TLS flags load a certificate and a CA that both checks the members
// this one dials and the members that dial it (mutual TLS).
func TestClusterTLSFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cluster CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "member"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caTmpl, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	ca, cert, keyFile := write("ca.pem", "CERTIFICATE", caDER), write("member.pem", "CERTIFICATE", leafDER), write("member-key.pem", "EC PRIVATE KEY", keyDER)

	o, err := parseFlags([]string{"-cluster-name=a", "-cluster-addr=127.0.0.1:7000"}, io.Discard,
		env(map[string]string{"CLUSTER_TLS_CERT": cert, "CLUSTER_TLS_KEY": keyFile, "CLUSTER_TLS_CA": ca}))
	require.NoError(t, err)
	cfg, info, err := joinCluster(clusterOptions{name: "a", addr: "127.0.0.1:7000", members: []string{"127.0.0.1:7100"},
		health: "127.0.0.1:7100", tlsCert: o.cluster.tlsCert, tlsKey: o.cluster.tlsKey, tlsCA: o.cluster.tlsCA}, nil, nil)
	require.NoError(t, err)
	require.Contains(t, info, "TLS between members")
	require.Len(t, cfg.TLS.Certificates, 1)
	require.Equal(t, tls.RequireAndVerifyClientCert, cfg.TLS.ClientAuth)
	parsed, err := x509.ParseCertificate(leafDER)
	require.NoError(t, err)
	for _, pool := range []*x509.CertPool{cfg.TLS.RootCAs, cfg.TLS.ClientCAs} {
		_, err := parsed.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		require.NoError(t, err, "the member's certificate chains to the configured CA")
	}

	_, err = clusterOptions{tlsCert: cert, tlsKey: keyFile, tlsCA: filepath.Join(dir, "missing.pem")}.tlsConfig()
	require.ErrorContains(t, err, "cluster TLS CA")
	_, err = clusterOptions{tlsCert: cert, tlsKey: keyFile, tlsCA: keyFile}.tlsConfig()
	require.ErrorContains(t, err, "holds no PEM certificate")
	_, err = clusterOptions{tlsCert: ca, tlsKey: keyFile, tlsCA: ca}.tlsConfig()
	require.ErrorContains(t, err, "cluster TLS certificate")
}
