package cluster

import "testing"

// Start fills c.lethe one server at a time and calls Stop on an error: if
// the second `lethe serve` fails to start, c.lethe[2] is nil and Stop
// dereferences it, so the cleanup panics and leaves etcd, Patroni and
// Vault running. (Found by review; Stop now skips what was not made.)
func TestStopAfterAStartThatFailedHalfway(t *testing.T) {
	c := &Cluster{lethe: make([]*proc, 3)}
	c.lethe[0] = newProc("lethe1", t.TempDir()+"/lethe1.log", nil)
	panicked := func() (p bool) {
		defer func() { p = recover() != nil }()
		c.Stop()
		return false
	}()
	if panicked {
		t.Error("Stop panics on a server Start did not make")
	}
}
