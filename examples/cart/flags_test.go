package main

import (
	"io"
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
