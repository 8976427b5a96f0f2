//go:build linux

package pgserver

import "syscall"

// sysProcAttr runs the child in its own process group (so a terminal's
// Ctrl-C reaches the process that owns the server, which then stops it in
// order), as cred when non-nil, and asks the kernel to send it SIGQUIT
// (postgres: immediate shutdown) if this process dies first.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Credential: cred,
		Pdeathsig:  syscall.SIGQUIT,
	}
}
