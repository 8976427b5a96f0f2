//go:build unix && !linux

package pgserver

import "syscall"

// sysProcAttr runs the child in its own process group, as cred when non-nil.
// Only Linux can tie the child's life to this process.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:    true,
		Credential: cred,
	}
}

// memoryTempDir reports no memory-backed directory outside Linux.
func memoryTempDir() (string, bool) { return "", false }
