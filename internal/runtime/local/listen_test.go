package local

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/env"
)

// Rows of /proc/net/tcp and /proc/net/tcp6 as a little-endian Linux
// printed them, with sockets bound to 0.0.0.0, 127.0.0.1, ::, ::1 and
// ::ffff:127.0.0.1 listening, and connections in other states.
const (
	procTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1061 1 00000000088d8ed3 100 0 0 10 0                      
   1: 00000000:A113 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 291087 1 00000000c04d826b 100 0 0 10 0                    
   2: 0100007F:B69F 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 291086 2 000000009267943a 100 0 0 10 0                    
   3: 0100007F:E068 0100007F:9575 06 00000000:00000000 03:00000000 00000000     0        0 0 3 00000000815091cd                                      
 203: 0100007F:B722 0100007F:B69F 01 00000000:00000000 00:00000000 00000000     0        0 291088 2 00000000e76dbee8 20 0 0 10 -1                    
`
	procTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:9A8F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 291083 1 000000008942d137 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:A4CD 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 291085 1 000000007ff34ac8 100 0 0 10 0
   2: 00000000000000000000000001000000:8FA1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 291084 1 00000000899a1c42 100 0 0 10 0
   3: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
`
)

func TestParseListeners(t *testing.T) {
	tests := map[string]struct {
		data    string
		order   binary.ByteOrder
		want    []listener
		beyond  []bool // per row of want: reachable beyond loopback
		wantErr bool
	}{
		"tcp": {data: procTCP, order: binary.LittleEndian, want: []listener{
			{netip.MustParseAddrPort("0.0.0.0:2024"), 1061},
			{netip.MustParseAddrPort("0.0.0.0:41235"), 291087},
			{netip.MustParseAddrPort("127.0.0.1:46751"), 291086},
		}, beyond: []bool{true, true, false}},
		"tcp6": {data: procTCP6, order: binary.LittleEndian, want: []listener{
			{netip.MustParseAddrPort("[::]:39567"), 291083},
			{netip.MustParseAddrPort("[::ffff:127.0.0.1]:42189"), 291085},
			{netip.MustParseAddrPort("[::1]:36769"), 291084},
			{netip.MustParseAddrPort("[2001:db8::1]:80"), 4242},
		}, beyond: []bool{true, false, false, true}},
		"big-endian": {data: "  sl  local_address rem_address   st\n   0: 7F000001:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 77 1\n",
			order: binary.BigEndian, want: []listener{{netip.MustParseAddrPort("127.0.0.1:8080"), 77}}, beyond: []bool{false}},
		"empty table":  {data: "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n", order: binary.LittleEndian},
		"short row":    {data: "   0: 0100007F:1F90 00000000:0000 0A\n", order: binary.LittleEndian, wantErr: true},
		"bad address":  {data: "   0: 0100007:1F90 00000000:0000 0A 0 0 0 0 0 77\n", order: binary.LittleEndian, wantErr: true},
		"bad port":     {data: "   0: 0100007F:XYZ 00000000:0000 0A 0 0 0 0 0 77\n", order: binary.LittleEndian, wantErr: true},
		"bad inode":    {data: "   0: 0100007F:1F90 00000000:0000 0A 0 0 0 0 0 x\n", order: binary.LittleEndian, wantErr: true},
		"not LISTEN":   {data: "   0: 00000000:1F90 0100007F:9575 01 0 0 0 0 0 77\n", order: binary.LittleEndian},
		"no port part": {data: "   0: 0100007F 00000000:0000 0A 0 0 0 0 0 77\n", order: binary.LittleEndian, wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseListeners([]byte(tt.data), tt.order)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i, l := range got {
				if b := !l.Addr.Addr().Unmap().IsLoopback(); b != tt.beyond[i] {
					t.Errorf("%s beyond loopback: %v, want %v", l.Addr, b, tt.beyond[i])
				}
			}
		})
	}
}

func TestSocketInode(t *testing.T) {
	for link, want := range map[string]uint64{"socket:[291083]": 291083, "pipe:[12]": 0, "/dev/null": 0, "socket:[x]": 0, "socket:[12": 0} {
		if got, ok := socketInode(link); got != want || ok != (want != 0) {
			t.Errorf("socketInode(%q) = %d, %v; want %d", link, got, ok, want)
		}
	}
}

// bindRun is a run command that starts the test app as a child of the
// shell (so the sockets are held by a process other than the group's
// leader), on $HOST, or on ANY_HOST where the checkout has a file
// BIND_ANY: an app that ignores $HOST.
const bindRun = `if [ -f BIND_ANY ]; then HOST="$ANY_HOST"; fi; "$LOCAL_TEST_BIN" & wait $!`

// commitFile adds name to the fixture's repository and returns the new SHA.
func (f *fixture) commitFile(name string) string {
	f.t.Helper()
	if err := os.WriteFile(f.repo+"/"+name, nil, 0o644); err != nil {
		f.t.Fatal(err)
	}
	for _, args := range [][]string{{"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "bind"}, {"rev-parse", "HEAD"}} {
		out, err := gitOut(f.repo, args...)
		if err != nil {
			f.t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		if args[0] == "rev-parse" {
			return strings.TrimSpace(out)
		}
	}
	return ""
}

func needProc(t *testing.T) {
	t.Helper()
	if goruntime.GOOS != "linux" {
		t.Skip("the listen check reads /proc")
	}
}

// TestListenCheck: an app on loopback (HOST) deploys silently; one that
// binds 0.0.0.0 or :: deploys with a warning naming the address.
func TestListenCheck(t *testing.T) {
	needProc(t)
	tests := map[string]struct {
		host string // where the app that ignores HOST listens
		want string // in the warning
	}{
		"0.0.0.0": {"0.0.0.0", "0.0.0.0:"},
		"::":      {"::", "[::]:"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if tt.host == "::" {
				ln, err := net.Listen("tcp6", "[::1]:0")
				if err != nil {
					t.Skip("no IPv6 on this machine")
				}
				ln.Close()
			}
			f := newFixture(t, Options{Run: bindRun}, 1)
			f.r.o.Env["ANY_HOST"] = tt.host
			ctx := context.Background()
			rel := f.release(f.shas[0])
			if err := f.r.Prepare(ctx, rel); err != nil {
				t.Fatal(err)
			}
			if err := f.r.Deploy(ctx, rel); err != nil {
				t.Fatal(err)
			}
			if len(rel.Warnings) != 0 {
				t.Fatalf("an app on $HOST got warnings: %q", rel.Warnings)
			}
			sha := f.commitFile("BIND_ANY")
			rel = f.release(sha)
			if err := f.r.Prepare(ctx, rel); err != nil {
				t.Fatal(err)
			}
			if err := f.r.Deploy(ctx, rel); err != nil {
				t.Fatal(err)
			}
			if len(rel.Warnings) != 1 || !strings.Contains(rel.Warnings[0], "warning: listens on "+tt.want) || !strings.Contains(rel.Warnings[0], "bind to $HOST") {
				t.Fatalf("warnings of an app on %s: %q", tt.host, rel.Warnings)
			}
			// A warning does not stop it: it serves.
			if _, sha2, _ := f.r.Running(ctx, "feat"); sha2 != sha {
				t.Errorf("running %s, want %s", env.ShortSHA(sha2), env.ShortSHA(sha))
			}
		})
	}
}

// TestRequireLoopback: with RequireLoopback an app that binds 0.0.0.0
// fails to start (terminal for its SHA) and the version before keeps
// serving.
func TestRequireLoopback(t *testing.T) {
	needProc(t)
	f := newFixture(t, Options{Run: bindRun, RequireLoopback: true}, 1)
	f.r.o.Env["ANY_HOST"] = "0.0.0.0"
	f.deploy(f.shas[0])
	ctx := context.Background()
	sha := f.commitFile("BIND_ANY")
	rel := f.release(sha)
	if err := f.r.Prepare(ctx, rel); err != nil {
		t.Fatal(err)
	}
	err := f.r.Deploy(ctx, rel)
	var se *env.StepError
	if !errors.As(err, &se) || se.Step != "start" || !strings.Contains(se.Err.Error(), "listens on 0.0.0.0:") {
		t.Fatalf("Deploy of an app on 0.0.0.0: %v, want a start StepError naming 0.0.0.0", err)
	}
	if _, running, _ := f.r.Running(ctx, "feat"); running != f.shas[0] {
		t.Errorf("running %s after the refused start, want the old %s", env.ShortSHA(running), env.ShortSHA(f.shas[0]))
	}
	code, body, err := do(f.srv.Client(), "GET", f.srv.URL+"/healthz", "")
	if err != nil || code != 200 || !strings.HasPrefix(body, f.shas[0]) {
		t.Errorf("proxy after the refused start: %d %q %v, want the old SHA", code, body, err)
	}
	if pids := processItems(t, f.st); len(pids) != 1 {
		t.Errorf("process items after the refused start: %v, want only the old one", pids)
	}
}

func gitOut(dir string, args ...string) (string, error) {
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	return string(out), err
}
