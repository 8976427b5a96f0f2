package main

import "syscall"

// memberProcAttr makes a member started by -cluster-demo die with the demo,
// even when the demo itself is killed.
func memberProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
