package limit

import (
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	local := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	chain := append([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, local...)
	tests := []struct {
		name    string
		remote  string
		xff     []string // one element per header line; nil: no header
		trusted []netip.Prefix
		want    string // "" means the zero Addr
	}{
		{"no proxy", "203.0.113.5:4000", nil, nil, "203.0.113.5"},
		{"untrusted peer's header is ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, local, "203.0.113.5"},
		{"header ignored when nothing is trusted", "127.0.0.1:4000", []string{"198.51.100.1"}, nil, "127.0.0.1"},
		{"spoofed trusted address from untrusted peer", "203.0.113.5:4000", []string{"127.0.0.1"}, local, "203.0.113.5"},
		{"trusted peer without header", "127.0.0.1:4000", nil, local, "127.0.0.1"},
		{"nginx", "127.0.0.1:4000", []string{"203.0.113.5"}, local, "203.0.113.5"},
		{"client-sent entries left of the client are ignored", "127.0.0.1:4000", []string{"6.6.6.6, 203.0.113.5"}, local, "203.0.113.5"},
		{"client claims to be the proxy", "127.0.0.1:4000", []string{"127.0.0.1, 203.0.113.5"}, local, "203.0.113.5"},
		{"chain of trusted proxies", "127.0.0.1:4000", []string{"203.0.113.5, 10.0.0.2, 10.1.2.3"}, chain, "203.0.113.5"},
		{"chain with spoofed prefix", "127.0.0.1:4000", []string{"1.1.1.1, 10.9.9.9, 203.0.113.5, 10.0.0.2"}, chain, "203.0.113.5"},
		{"untrusted hop stops the walk", "127.0.0.1:4000", []string{"203.0.113.5, 198.51.100.9, 10.0.0.2"}, chain, "198.51.100.9"},
		{"every entry trusted gives the left-most", "127.0.0.1:4000", []string{"10.0.0.5, 10.0.0.2"}, chain, "10.0.0.5"},
		{"several header lines form one list", "127.0.0.1:4000", []string{"6.6.6.6", "203.0.113.5"}, local, "203.0.113.5"},
		{"walk continues into earlier lines", "127.0.0.1:4000", []string{"203.0.113.5", "10.0.0.2"}, chain, "203.0.113.5"},
		{"extra spaces", "127.0.0.1:4000", []string{" 203.0.113.5 ,\t10.0.0.2 "}, chain, "203.0.113.5"},
		{"entry with port", "127.0.0.1:4000", []string{"203.0.113.5:4711"}, local, "203.0.113.5"},
		{"IPv6 entry with port", "127.0.0.1:4000", []string{"[2001:db8::1]:80"}, local, "2001:db8::1"},
		{"IPv6 proxy and client", "[::1]:4000", []string{"2001:db8::1"}, local, "2001:db8::1"},
		{"IPv4-mapped peer is trusted as IPv4", "[::ffff:127.0.0.1]:4000", []string{"203.0.113.5"}, local, "203.0.113.5"},
		{"IPv4-mapped entry comes back as IPv4", "127.0.0.1:4000", []string{"::ffff:203.0.113.5"}, local, "203.0.113.5"},
		{"zone is dropped", "[fe80::1%eth0]:4000", nil, nil, "fe80::1"},
		{"garbage right-most entry falls back to peer", "127.0.0.1:4000", []string{"203.0.113.5, garbage"}, local, "127.0.0.1"},
		{"garbage left of the client is never read", "127.0.0.1:4000", []string{"garbage, 203.0.113.5"}, local, "203.0.113.5"},
		{"garbage after trusted hop falls back to peer", "127.0.0.1:4000", []string{"unknown, 10.0.0.2"}, chain, "127.0.0.1"},
		{"empty header", "127.0.0.1:4000", []string{""}, local, "127.0.0.1"},
		{"trailing comma", "127.0.0.1:4000", []string{"203.0.113.5,"}, local, "127.0.0.1"},
		{"empty entry after trusted hop", "127.0.0.1:4000", []string{",10.0.0.2"}, chain, "127.0.0.1"},
		{"prefix is not an address", "127.0.0.1:4000", []string{"203.0.113.0/24"}, local, "127.0.0.1"},
		{"remote address without port", "203.0.113.5", nil, nil, "203.0.113.5"},
		{"unix socket peer", "@", []string{"203.0.113.5"}, local, ""},
		{"empty remote address", "", nil, local, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/socket.io/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got := ClientIP(r, tt.trusted)
			var want netip.Addr
			if tt.want != "" {
				want = netip.MustParseAddr(tt.want)
			}
			if got != want {
				t.Errorf("ClientIP(RemoteAddr %q, X-Forwarded-For %q) = %v, want %v", tt.remote, tt.xff, got, want)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{" , ", nil, false},
		{"127.0.0.1/32,::1/128", []string{"127.0.0.1/32", "::1/128"}, false},
		{"10.0.0.0/8, 192.0.2.7", []string{"10.0.0.0/8", "192.0.2.7/32"}, false},
		{"2001:db8::1", []string{"2001:db8::1/128"}, false},
		{"10.1.2.3/8", []string{"10.0.0.0/8"}, false},
		{"::ffff:10.0.0.0/104", []string{"10.0.0.0/8"}, false},
		{"127.0.0.1/32,", []string{"127.0.0.1/32"}, false},
		{"localhost", nil, true},
		{"10.0.0.0/33", nil, true},
		{"fe80::1%eth0", nil, true},
		{"127.0.0.1/32,bogus", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePrefixes(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParsePrefixes(%q) error = %v, want error: %v", tt.in, err, tt.wantErr)
			}
			var gotS []string
			for _, p := range got {
				gotS = append(gotS, p.String())
			}
			if !slices.Equal(gotS, tt.want) {
				t.Errorf("ParsePrefixes(%q) = %q, want %q", tt.in, gotS, tt.want)
			}
		})
	}
}

func TestAddrKey(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"203.0.113.5", "203.0.113.5"},
		{"::ffff:203.0.113.5", "203.0.113.5"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	}
	for _, tt := range tests {
		if got := AddrKey(netip.MustParseAddr(tt.in)); got != tt.want {
			t.Errorf("AddrKey(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := AddrKey(netip.Addr{}); got != "" {
		t.Errorf("AddrKey(zero) = %q, want \"\"", got)
	}
}

// FuzzClientIP checks ClientIP's contract on arbitrary RemoteAddr and
// X-Forwarded-For values: an untrusted peer is always the answer, and
// otherwise the answer is the peer or an entry of the header that every
// entry to its right vouches for.
func FuzzClientIP(f *testing.F) {
	f.Add("127.0.0.1:4000", "6.6.6.6, 203.0.113.5")
	f.Add("127.0.0.1:4000", "203.0.113.5, 10.0.0.2, 10.1.2.3")
	f.Add("203.0.113.5:4000", "127.0.0.1")
	f.Add("[::1]:4000", "garbage, [2001:db8::1]:80")
	f.Add("[::ffff:127.0.0.1]:1", "10.0.0.5,10.0.0.2")
	f.Add("@", "")
	trusted := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.0.0.0/8"),
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		got := ClientIP(r, trusted)

		peer, ok := parseHost(remote)
		switch {
		case !ok:
			if got.IsValid() {
				t.Fatalf("RemoteAddr %q is no address, but ClientIP = %v", remote, got)
			}
			return
		case !inAny(peer, trusted) || got == peer:
			if got != peer {
				t.Fatalf("untrusted peer %v, but ClientIP = %v", peer, got)
			}
			return
		}
		entries := strings.Split(xff, ",")
		for i := len(entries) - 1; i >= 0; i-- {
			a, ok := parseHost(strings.TrimSpace(entries[i]))
			if !ok {
				t.Fatalf("ClientIP = %v, not the peer, though entry %q is malformed (header %q)", got, entries[i], xff)
			}
			if a == got {
				if inAny(a, trusted) && i != 0 {
					t.Fatalf("ClientIP = trusted %v that is not the left-most entry (header %q)", got, xff)
				}
				return
			}
			if !inAny(a, trusted) {
				t.Fatalf("ClientIP = %v, but untrusted %v is nearer (header %q)", got, a, xff)
			}
		}
		t.Fatalf("ClientIP = %v, which is neither the peer nor in the header %q", got, xff)
	})
}
