// Package devenv starts private PostgreSQL and Vault servers on loopback for
// Lethe's tests, benchmarks and local runs (`make test`, `make run`).
//
// It is developer tooling, not part of Lethe itself: nothing in the shipped
// binary imports it. It uses only the standard library and the servers'
// own programs:
//
//   - StartPostgres creates (initdb) or reuses a PostgreSQL cluster in a
//     folder and starts it with pg_ctl on 127.0.0.1. The server binaries are
//     found with pg_config or under /usr/lib/postgresql/*/bin. PostgreSQL
//     refuses to run as root, so when the caller is root the cluster folder
//     is handed to the unprivileged "postgres" user and the server is run as
//     that user with runuser; every parent folder must then be enterable by
//     that user (CheckPostgresAccess says which one is not).
//   - StartVault starts a Vault server: a dev server (in memory, unsealed,
//     KV v2 at secret/) when no folder is given, or a persistent server with
//     file storage in a folder, initialised on first start and unsealed on
//     every start, so keys survive restarts. Vault is built from source into
//     bin/vault (see VaultBinary); Vault's output goes to a log file, never
//     to the terminal.
//
// The servers are meant for one developer's machine or a CI runner: they
// listen on loopback only, PostgreSQL trusts every local connection as the
// superuser "root", and Vault is driven with its root token.
//
// Processes are cleaned up as follows: Vault is a child of the Go process
// and receives SIGTERM if the parent dies; PostgreSQL is daemonised by
// pg_ctl and must be stopped with Postgres.Stop (a server left running by a
// crashed run is stopped by the next StartPostgres on the same folder).
package devenv
