package limit

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP returns the address of the client that made r.
//
// It is the peer address from r.RemoteAddr, unless the peer lies inside one
// of the trusted prefixes (a reverse proxy such as nginx on 127.0.0.1). Then
// X-Forwarded-For is read from right to left, each hop having appended the
// address it received the request from: the first address that is not
// itself trusted is the client. Everything to its left was written by the
// client and is ignored, so a client cannot choose its own address by
// sending the header. If every address in the header is trusted, the
// left-most is returned.
//
// The peer is returned when it is not trusted, when the header is absent,
// or when an entry read before the client was found is not an IP address
// (with or without a port): a proxy that writes such entries is
// misconfigured, and its own address is the only one known to be true.
// Several X-Forwarded-For lines count as one list, in order. The Forwarded
// header (RFC 7239) is not read.
//
// IPv4-mapped IPv6 addresses are returned as IPv4, and zones are dropped.
// The result is the zero Addr if r.RemoteAddr is not an IP address, as on
// a Unix socket listener.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer, ok := parseHost(r.RemoteAddr)
	if !ok {
		return netip.Addr{}
	}
	if !inAny(peer, trusted) {
		return peer
	}
	values := r.Header.Values("X-Forwarded-For")
	if len(values) == 0 {
		return peer
	}
	var leftmost netip.Addr
	for i := len(values) - 1; i >= 0; i-- {
		list := values[i]
		for {
			// Walk from the right without splitting the whole header:
			// its left part, which the client wrote, is never looked at.
			cut := strings.LastIndexByte(list, ',')
			a, ok := parseHost(strings.TrimSpace(list[cut+1:]))
			if !ok {
				return peer
			}
			if !inAny(a, trusted) {
				return a
			}
			leftmost = a
			if cut < 0 {
				break
			}
			list = list[:cut]
		}
	}
	return leftmost
}

// Unforwarded reports whether r comes from a trusted proxy that names no
// client: the peer lies inside trusted and sent no X-Forwarded-For. Then
// ClientIP can only return the proxy's own address, the same for every
// client behind it. (A client on a trusted address that connects directly
// looks the same, and is one machine anyway.)
func Unforwarded(r *http.Request, trusted []netip.Prefix) bool {
	peer, ok := parseHost(r.RemoteAddr)
	return ok && inAny(peer, trusted) && len(r.Header.Values("X-Forwarded-For")) == 0
}

// parseHost parses an address with or without a port, as found in
// RemoteAddr and in X-Forwarded-For entries, in the canonical form that
// ClientIP returns.
func parseHost(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), true
}

func inAny(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses a comma-separated list of trusted proxies for
// ClientIP, such as "127.0.0.1/32,::1/128" or "10.0.0.0/8, 192.0.2.7". A
// bare address means that address alone. Empty fields are skipped, so ""
// gives an empty list (trust no proxy). IPv4-mapped IPv6 prefixes are
// converted to IPv4, the form ClientIP compares.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for field := range strings.SplitSeq(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(field, "/") {
			var err error
			if p, err = netip.ParsePrefix(field); err != nil {
				return nil, fmt.Errorf("trusted proxies: %w", err)
			}
		} else {
			a, err := netip.ParseAddr(field)
			if err != nil {
				return nil, fmt.Errorf("trusted proxies: %w", err)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("trusted proxies: %q: zones are not allowed", field)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// AddrKey returns the key to limit a client address by: the address itself
// for IPv4, and its /64 network for IPv6, since one IPv6 subscriber is
// routinely given a whole /64 and could otherwise appear as billions of
// clients. The zero Addr gives "".
func AddrKey(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a.WithZone(""), 64).Masked().String()
}
