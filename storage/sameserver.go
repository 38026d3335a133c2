package storage

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Resolver looks host names up; net.DefaultResolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ResolveTimeout bounds each host name lookup of SameServer.
const ResolveTimeout = 5 * time.Second

// SameServer reports whether a and b keep their objects on one server
// (Where's server), counting two names of one host as one: a host name
// and its address, two names with an address in common, and every name
// of this machine (localhost and *.localhost, loopback addresses, the
// unspecified 0.0.0.0 and ::, the addresses of its interfaces) as one
// host. The rest of the server (its kind, port, bucket, account and
// container) must be the same; a Swift region or project one of them
// leaves to Keystone, or names by id where the other names it by name,
// does not tell them apart.
//
// It is for safety checks (archive-copy's overlap check, retention's
// nested sites), where a false "one server" only refuses an operation
// with an error while a false "two servers" can copy a site onto itself
// or have one site's retention delete another's objects. So when the
// servers differ in their hosts alone and a host name cannot be looked
// up (within ResolveTimeout), SameServer does not answer "two servers":
// it returns an error saying which name did not resolve, and the caller
// refuses. Two names that resolve to no address in common are two
// servers; a proxy or a load balancer in front of a server, whose
// address is its own, cannot be told from another server.
func SameServer(ctx context.Context, r Resolver, a, b Config) (bool, error) {
	sa, _ := a.where()
	sb, _ := b.where()
	if !sa.sameButHost(sb) {
		return false, nil
	}
	ha, hb := sa.host, sb.host
	if ha == hb {
		return true, nil
	}
	if ha == "" || hb == "" {
		return false, nil
	}
	addrsA, err := hostAddrs(ctx, r, ha)
	if err != nil {
		return false, fmt.Errorf("cannot tell whether hosts %s and %s are one server: %w", ha, hb, err)
	}
	addrsB, err := hostAddrs(ctx, r, hb)
	if err != nil {
		return false, fmt.Errorf("cannot tell whether hosts %s and %s are one server: %w", ha, hb, err)
	}
	for x := range addrsA {
		if addrsB[x] {
			return true, nil
		}
	}
	return false, nil
}

// thisMachine stands for every address of this machine in hostAddrs'
// sets.
const thisMachine = "this machine"

// hostAddrs returns the addresses host names, as strings, each of this
// machine's as thisMachine: host itself when it is an address, else
// what r finds for it; localhost and names under .localhost (RFC 6761)
// are this machine's without a lookup.
func hostAddrs(ctx context.Context, r Resolver, host string) (map[string]bool, error) {
	set := map[string]bool{}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		set[thisMachine] = true
		return set, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		set[addrKey(ip)] = true
		return set, nil
	}
	ctx, cancel := context.WithTimeout(ctx, ResolveTimeout)
	defer cancel()
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err == nil && len(ips) == 0 {
		err = fmt.Errorf("lookup %s: no address", host)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, ip := range ips {
		set[addrKey(ip)] = true
	}
	return set, nil
}

// addrKey is ip as hostAddrs counts it: thisMachine for a loopback or
// unspecified address or one of this machine's interfaces, else the
// address (an IPv4-mapped IPv6 address as IPv4, without a zone).
func addrKey(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	if ip.IsLoopback() || ip.IsUnspecified() || localAddrs()[ip] {
		return thisMachine
	}
	return ip.String()
}

// localAddrs are the addresses of this machine's interfaces (none when
// they cannot be read: a server named by one of them is then compared
// by its address).
var localAddrs = sync.OnceValue(func() map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return m
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				m[ip.Unmap()] = true
			}
		}
	}
	return m
})
