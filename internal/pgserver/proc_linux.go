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

// shmDir is Linux's memory-backed filesystem, present on most systems.
const shmDir = "/dev/shm"

// minMemoryDirFree is how much free space shmDir needs to host clusters.
const minMemoryDirFree = 1 << 30

// memoryTempDir returns shmDir when it is a writable tmpfs with at least
// minMemoryDirFree bytes free. Creating and dropping databases there is an
// order of magnitude faster than on a disk filesystem.
func memoryTempDir() (string, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(shmDir, &st); err != nil {
		return "", false
	}
	const tmpfsMagic = 0x01021994
	if st.Type != tmpfsMagic || st.Bavail*uint64(st.Bsize) < minMemoryDirFree {
		return "", false
	}
	if syscall.Access(shmDir, 0x2|0x1) != nil { // W_OK|X_OK
		return "", false
	}
	return shmDir, true
}
