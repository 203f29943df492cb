// Package local is the runtime that runs each environment as a process
// group on this machine: a checkout of exactly the head SHA in its own
// work dir, the optional build, migrate, and the app on a free port behind
// the preview proxy (Proxy), told to listen on HOST=127.0.0.1; once it is
// healthy, the sockets its group listens on are checked (listen.go), and
// one reachable beyond loopback is warned about or refused. An update starts the new process and switches
// the route only once it is healthy, and the process it replaces drains: it
// is stopped once the requests it serves are done, and a request that
// cannot reach its process is retried on the current one when that is
// safe. An environment may have more processes than the routed one
// (workers, processes.go): each in its own process group, its lines in the
// log tagged with its name, started, stopped, slept and adopted with the
// routed one. A process that dies is reported so the reconciler restarts
// it; a worker alone is restarted while the routed one serves on.
// Sleep stops an environment's process group and keeps its work dir,
// build and data, so Deploy of the same release wakes it without a fetch
// or a build (sleep.go); Usage meters every process group's CPU time and
// memory from one scan of /proc (usage.go). Build, migrate and app output
// go to one log per environment, each step under a header line; Follow
// reads it as it grows, each line tagged with its step (follow.go).
// git runs through internal/git. Everything it makes is recorded in the
// environment's inventory, and after a restart of previewd it adopts the
// processes that still run and stops the ones it cannot account for.
// Dependency caches, built once per content of their key files, and
// builds kept by tree are shared between environments under
// <dir>/caches (cache.go, store.go, buildcache.go).
package local
