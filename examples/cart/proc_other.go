//go:build !linux

package main

import "syscall"

// memberProcAttr: only Linux can tie a child's life to its parent's; the
// demo stops its members itself on every way out.
func memberProcAttr() *syscall.SysProcAttr { return nil }
