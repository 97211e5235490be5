// Package cluster starts Lethe's highly available topology on one machine,
// on loopback, for `make cluster` and the fault drills: etcd (3 members),
// PostgreSQL managed by Patroni (a primary and a synchronous standby),
// Vault with integrated storage (3 Raft nodes), three `lethe serve`
// processes, and HAProxy in front of PostgreSQL (the Patroni leader, and
// the standbys), Vault (the active node) and Lethe (round robin).
//
// It is developer tooling, like package devenv: nothing in the shipped
// binary imports it. It runs the Debian packages patroni, etcd-server and
// haproxy (scripts/install-cluster-deps.sh installs them), PostgreSQL's
// server programs, and bin/vault. Every server is a child of the calling
// process (Patroni runs as the postgres user when the caller is root) and
// gets SIGTERM if the caller dies; data, logs and the state (ports and
// local secrets) live in one folder and survive restarts.
package cluster
