package main

// Packet redirection with nftables, spoken over netlink (no nft or iptables binary is
// needed in the image).
//
// In a pod (bridge "steal"): the map kubeloop/steal sends new TCP connections for a
// port to the agent's listener. Its elements expire unless the agent renews them, which
// it does only while the client's heartbeats arrive: if the agent, its stream or the
// developer's machine dies, traffic goes back to the app by itself, with no clean-up
// code having to run (mirrord's users report rules left behind when its agent dies).
// Connections from the node (the kubelet's probes) are never redirected.
//
// On the developer's machine (inside the bridged command's own network namespace): every
// TCP connection that leaves for a non-loopback address, and every DNS query, goes to
// kubeloop's listeners, which carry them to the pod.

import (
	"encoding/binary"
	"net"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

const (
	nftTable    = "kubeloop"
	stealMap    = "steal"
	redirPortOK = 2 // NF_NAT_RANGE_PROTO_SPECIFIED
)

func port16(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

func natChain(conn *nftables.Conn, table *nftables.Table, name string, hook *nftables.ChainHook) *nftables.Chain {
	return conn.AddChain(&nftables.Chain{
		Name: name, Table: table, Type: nftables.ChainTypeNAT, Hooknum: hook,
		Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest - 10),
	})
}

// stealer owns the steal map in the pod's network namespace.
type stealer struct {
	conn  *nftables.Conn
	table *nftables.Table
	steal *nftables.Set
}

// newStealer makes (idempotently) the table, the map and the one rule:
//
//	meta l4proto tcp ip saddr != NODE redirect to :tcp dport map @steal
func newStealer(node net.IP) (*stealer, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, err
	}
	table := conn.AddTable(&nftables.Table{Name: nftTable, Family: nftables.TableFamilyIPv4})
	set := &nftables.Set{Table: table, Name: stealMap, IsMap: true, HasTimeout: true,
		KeyType: nftables.TypeInetService, DataType: nftables.TypeInetService}
	if err := conn.AddSet(set, nil); err != nil {
		return nil, err
	}
	chain := natChain(conn, table, "prerouting", nftables.ChainHookPrerouting)
	if err := conn.Flush(); err != nil {
		return nil, err
	}
	rules, err := conn.GetRules(table, chain)
	if err != nil {
		return nil, err
	}
	if len(rules) == 0 {
		exprs := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		}
		if v4 := node.To4(); v4 != nil {
			exprs = append(exprs,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(v4)})
		}
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: set.Name, SetID: set.ID},
			&expr.Redir{RegisterProtoMin: 1, RegisterProtoMax: 1, Flags: redirPortOK})
		conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs})
		if err := conn.Flush(); err != nil {
			return nil, err
		}
	}
	live, err := conn.GetSetByName(table, stealMap)
	if err != nil {
		return nil, err
	}
	return &stealer{conn: conn, table: table, steal: live}, nil
}

// owner returns the listener port a stolen port goes to now (0: not stolen).
func (s *stealer) owner(port uint16) uint16 {
	elements, err := s.conn.GetSetElements(s.steal)
	if err != nil {
		return 0
	}
	for _, e := range elements {
		if len(e.Key) >= 2 && binary.BigEndian.Uint16(e.Key) == port && len(e.Val) >= 2 {
			return binary.BigEndian.Uint16(e.Val)
		}
	}
	return 0
}

// set (re)installs port -> listener for ttl: the old element goes and a new one comes in
// one transaction, which is what renews its time.
func (s *stealer) install(port, listener uint16, ttl time.Duration) error {
	element := []nftables.SetElement{{Key: port16(port), Val: port16(listener)}}
	if s.owner(port) != 0 {
		if err := s.conn.SetDeleteElements(s.steal, element); err != nil {
			return err
		}
	}
	element[0].Timeout = ttl
	if err := s.conn.SetAddElements(s.steal, element); err != nil {
		return err
	}
	return s.conn.Flush()
}

func (s *stealer) release(port uint16) error {
	if err := s.conn.SetDeleteElements(s.steal, []nftables.SetElement{{Key: port16(port)}}); err != nil {
		return err
	}
	return s.conn.Flush()
}

// redirectOutbound sets up the local namespace: TCP to anything but loopback goes to
// tcpPort, DNS to dnsPort.
//
//	udp dport 53 redirect to :DNS     (the resolver named in its resolv.conf is 127.0.0.1)
//	ip daddr 127.0.0.0/8 accept
//	meta l4proto tcp redirect to :TCP
func redirectOutbound(tcpPort, dnsPort uint16) error {
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	table := conn.AddTable(&nftables.Table{Name: nftTable, Family: nftables.TableFamilyIPv4})
	chain := natChain(conn, table, "output", nftables.ChainHookOutput)
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port16(53)},
		&expr.Immediate{Register: 1, Data: port16(dnsPort)},
		&expr.Redir{RegisterProtoMin: 1, RegisterProtoMax: 1, Flags: redirPortOK},
	}})
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127}},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Immediate{Register: 1, Data: port16(tcpPort)},
		&expr.Redir{RegisterProtoMin: 1, RegisterProtoMax: 1, Flags: redirPortOK},
	}})
	return conn.Flush()
}
