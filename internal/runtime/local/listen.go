package local

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/previewd/previewd/internal/env"
)

// appHost is the HOST apps get: they listen on loopback, so a preview is
// reached only through previewd's proxy (and whatever guards it).
const appHost = "127.0.0.1"

// checkListen looks at the TCP sockets p's process group listens on. One
// bound beyond loopback (0.0.0.0 and :: included) is reachable around
// previewd's proxy: that adds a warning to rel, or, with
// Options.RequireLoopback, fails the start (an env.StepError). Where there
// is no /proc (not Linux) the check is skipped.
func (r *Runtime) checkListen(p *proc, rel *env.Release) error {
	if goruntime.GOOS != "linux" {
		r.log.Debug("listen check skipped: no /proc", "env", p.Key, "os", goruntime.GOOS)
		return nil
	}
	addrs, err := exposedAddrs(p.PID)
	if err != nil {
		if r.o.RequireLoopback {
			return fmt.Errorf("checking the app's listening sockets: %w", err)
		}
		r.log.Warn("checking the app's listening sockets", "env", p.Key, "pid", p.PID, "err", err)
		return nil
	}
	if len(addrs) == 0 {
		return nil
	}
	names := make([]string, len(addrs))
	for i, a := range addrs {
		names[i] = a.String()
	}
	where := strings.Join(names, ", ")
	r.log.Warn("app listens beyond loopback", "env", p.Key, "sha", env.ShortSHA(p.SHA), "addrs", where, "required", r.o.RequireLoopback)
	if r.o.RequireLoopback {
		return &env.StepError{Step: "start", Err: fmt.Errorf("listens on %s, reachable around previewd's proxy, and loopback is required (previews.requireLoopback); bind to $HOST", where),
			Tail: tail(r.logPath(p.Key), 20)}
	}
	rel.Warnings = append(rel.Warnings, fmt.Sprintf("warning: listens on %s, reachable around previewd's proxy; bind to $HOST", where))
	return nil
}

// exposedAddrs returns the addresses beyond loopback that the processes
// of process group group listen on, sorted, without duplicates. The socket
// tables are read from the group leader's network namespace.
func exposedAddrs(group int) ([]netip.AddrPort, error) {
	inodes, err := groupSockets(group)
	if err != nil {
		return nil, err
	}
	if len(inodes) == 0 {
		return nil, nil
	}
	var out []netip.AddrPort
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(group) + "/net/" + table)
		if errors.Is(err, fs.ErrNotExist) && table == "tcp6" {
			continue // no IPv6
		}
		if err != nil {
			return nil, fmt.Errorf("reading the socket table: %w", err)
		}
		ls, err := parseListeners(data, binary.NativeEndian)
		if err != nil {
			return nil, fmt.Errorf("/proc/net/%s: %w", table, err)
		}
		for _, l := range ls {
			if inodes[l.Inode] && !l.Addr.Addr().Unmap().IsLoopback() && !slices.Contains(out, l.Addr) {
				out = append(out, l.Addr)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out, nil
}

// groupSockets returns the inodes of the sockets that the processes of
// process group group hold open. A process that goes away while it is
// looked at, or whose descriptors cannot be read, is passed over.
func groupSockets(group int) (map[uint64]bool, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	inodes := map[uint64]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pgid(pid) != group {
			continue
		}
		dir := "/proc/" + e.Name() + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(dir + "/" + fd.Name())
			if err != nil {
				continue
			}
			if n, ok := socketInode(link); ok {
				inodes[n] = true
			}
		}
	}
	return inodes, nil
}

// socketInode parses the target of a /proc/<pid>/fd link to a socket,
// "socket:[12345]".
func socketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// listener is one row of /proc/net/tcp{,6} in state LISTEN.
type listener struct {
	Addr  netip.AddrPort
	Inode uint64
}

// tcpListen is the state of a listening socket in /proc/net/tcp (the
// kernel's TCP_LISTEN).
const tcpListen = "0A"

// parseListeners returns the listening sockets of a /proc/net/tcp or
// /proc/net/tcp6 table. The kernel prints an address as 32-bit words in
// hex, each in its own byte order (order: little-endian on x86 and arm64),
// and the port in hex as a number. An IPv4 socket in tcp6 shows as an
// IPv4-mapped address (::ffff:a.b.c.d), kept as such.
func parseListeners(data []byte, order binary.ByteOrder) ([]listener, error) {
	var out []listener
	sc := bufio.NewScanner(bytes.NewReader(data))
	first := true
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if first {
			first = false
			if len(f) > 0 && f[0] == "sl" {
				continue // the header
			}
		}
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("short row %q", sc.Text())
		}
		if f[3] != tcpListen {
			continue
		}
		addr, err := parseHexAddr(f[1], order)
		if err != nil {
			return nil, err
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("inode %q: %w", f[9], err)
		}
		out = append(out, listener{Addr: addr, Inode: inode})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// parseHexAddr parses "0100007F:1F90" (IPv4) or 32 hex digits and a port
// (IPv6), as /proc/net/tcp{,6} print them.
func parseHexAddr(s string, order binary.ByteOrder) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q has no port", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port of %q: %w", s, err)
	}
	raw, err := hex.DecodeString(host)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q: want 8 or 32 hex digits", s)
	}
	// Each 32-bit word was printed as a number: put its bytes back in
	// the kernel's order.
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		order.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr, uint16(p)), nil
}
