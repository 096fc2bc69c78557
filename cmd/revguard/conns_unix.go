//go:build unix

package main

import "syscall"

// maxConns is the bound on the API's open connections: the process's limit of open
// files less a reserve for the stores, the journal and the webhooks (an eighth, at
// least 256), so that a flood of connections cannot leave them without a descriptor.
// 0 (no bound) when the limit cannot be read.
func maxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 0
	}
	return connsWithin(rl.Cur)
}
