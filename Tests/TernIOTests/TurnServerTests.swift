#if canImport(Glibc)
import Glibc
#endif
import Logging
import STUN
import TernCore
import Testing
@testable import TernIO

/// What only real sockets show about UDP relaying: datagrams really leaving relay sockets and
/// arriving back, IPv6 and reserved ports bound by the kernel, socket options, and descriptors
/// closed when allocations end. The TURN methods themselves are tested in TernCoreTests.
@Suite("TURN over UDP (RFC 8656) with the project's own client")
struct TurnServerTests {
    @Test("Allocate, permission, Send/Data indications and ChannelData relay both ways")
    func relayRoundTrip() throws {
        try withTurnServer { server, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            let peer = try TestPeer()
            defer { peer.close() }
            let allocated = try client.allocate()
            #expect(allocated.type == MessageType(method: .allocate, class: .successResponse), "\(allocated)")
            let relay = try #require(relayedAddresses(allocated).first)
            #expect(relay.ip == .loopbackV4)
            #expect((62000...62999).contains(relay.port))
            #expect(allocated.first(.lifetime) == .lifetime(600))
            #expect(allocated.first(.xorMappedAddress) == .xorMappedAddress(client.socket.localAddress))
            // No permission yet: a Send indication is dropped.
            client.sendIndication(to: peer.address, [1, 2, 3])
            let perm = try client.request(.createPermission, [.xorPeerAddress(peer.address)])
            #expect(perm.type.messageClass == .successResponse, "\(perm)")
            client.sendIndication(to: peer.address, Array("hello peer".utf8))
            let got = try #require(peer.receive())
            #expect(got.data == Array("hello peer".utf8))
            #expect(got.from == relay)
            peer.send(Array("hello client".utf8), to: relay)
            let back = try #require(client.receiveRelayed())
            #expect(back.peer == peer.address)
            #expect(back.data == Array("hello client".utf8))
            // Channel 0x4000 to the same peer.
            let bind = try client.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(peer.address)])
            #expect(bind.type.messageClass == .successResponse, "\(bind)")
            client.sendChannelData(0x4000, [9, 8, 7])
            #expect(peer.receive()?.data == [9, 8, 7])
            peer.send([6, 5, 4, 3, 2], to: relay)
            let viaChannel = try #require(client.receiveRelayed())
            #expect(viaChannel.channel == 0x4000)
            #expect(viaChannel.data == [6, 5, 4, 3, 2])
            // A peer at another IP has no permission (permissions are per IP, RFC 8656 section 9):
            // dropped and counted, never relayed.
            let stranger = try TestPeer(ip: IPAddress("127.0.0.2")!)
            defer { stranger.close() }
            stranger.send([0xAA], to: relay)
            // Two drops in all: the Send indication before the permission, and the stranger's datagram.
            #expect(eventually { server.stats().droppedNoPermission == 2 })
            #expect(server.stats().allocations == 1)
            let live = server.withHandlers { $0.allocations.all.map(\.counters) }.flatMap { $0 }
            #expect(live.first?.packetsToPeer == 2)
            #expect(live.first?.packetsToClient == 2)
            #expect(live.first?.droppedNoPermission == 1)
        }
    }

    @Test("Refresh with LIFETIME 0 closes the relay socket")
    func deleteClosesSocket() throws {
        try withTurnServer { server, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try client.allocate().type.messageClass == .successResponse)
            #expect(server.stats().relaySockets == 1)
            #expect(try client.request(.refresh, [.lifetime(0)]).first(.lifetime) == .lifetime(0))
            #expect(server.stats().allocations == 0)
            // The relay socket's descriptor is closed in its source's cancel handler, asynchronously.
            #expect(eventually { server.stats().relaySockets == 0 })
        }
    }

    @Test("IPv6 relays: REQUESTED-ADDRESS-FAMILY and dual allocations")
    func ipv6Relays() throws {
        try withTurnServer { _, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            let dual = try client.allocate([.additionalAddressFamily(.ipv6)])
            let relays = relayedAddresses(dual)
            #expect(relays.map(\.ip.family) == [.ipv4, .ipv6])
            let peer6 = try TestPeer(ip: .loopbackV6)
            defer { peer6.close() }
            #expect(try client.request(.createPermission, [.xorPeerAddress(peer6.address)]).type.messageClass == .successResponse)
            client.sendIndication(to: peer6.address, [42])
            let got = try #require(peer6.receive())
            #expect(got.from == relays[1])
            let only6 = try TurnTestClient(server: address, username: "bob", password: "builder")
            let m = try only6.allocate([.requestedAddressFamily(.ipv6)])
            #expect(relayedAddresses(m).map(\.ip) == [.loopbackV6])
        }
    }

    @Test("EVEN-PORT with R holds the next port as a real socket until a RESERVATION-TOKEN redeems it")
    func evenPort() throws {
        try withTurnServer { server, address in
            let first = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            let m = try first.allocate([.evenPort(reserve: true)])
            let relay = try #require(relayedAddresses(m).first)
            #expect(relay.port % 2 == 0)
            guard case .reservationToken(let token)? = m.first(.reservationToken) else { Issue.record("no token"); return }
            // The reserved port is bound: nobody else can take it.
            #expect(!canBindUDP(TransportAddress(ip: relay.ip, port: relay.port + 1)))
            let second = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            let r = try second.allocate([.reservationToken(token)])
            let adopted = try #require(relayedAddresses(r).first, "\(r)")
            #expect(adopted.port == relay.port + 1)
            // The adopted socket relays.
            let peer = try TestPeer()
            defer { peer.close() }
            #expect(try second.request(.createPermission, [.xorPeerAddress(peer.address)]).type.messageClass == .successResponse)
            second.sendIndication(to: peer.address, [7])
            #expect(peer.receive()?.from == adopted)
            #expect(server.stats().relaySockets == 2)
        }
    }

    @Test("508 when the kernel has no relay port left in the range; a freed port is reused")
    func portsExhausted() throws {
        try withTurnServer(portRange: 63000...63001) { server, address in
            var clients: [TurnTestClient] = []
            for _ in 0..<2 {
                let c = try TurnTestClient(server: address, username: "alice", password: "wonderland")
                #expect(try c.allocate().type.messageClass == .successResponse)
                clients.append(c)
            }
            let late = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try late.allocate().errorCode?.code == 508)
            _ = try clients[0].request(.refresh, [.lifetime(0)])
            #expect(eventually { server.stats().relaySockets == 1 })
            #expect(try late.allocate().type.messageClass == .successResponse)
        }
    }

    @Test("Allocations, permissions and channels expire on the worker's tick; sockets are given back")
    func expiry() throws {
        let clock = testClock()
        try withTurnServer(clock: clock) { server, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            _ = try client.allocate()
            let peer = try TestPeer()
            defer { peer.close() }
            _ = try client.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(peer.address)])
            // 301 s later the permission is gone but the allocation lives.
            clock.advance(by: 301); server.tick()
            let perms = server.withHandlers { $0.allocations.all.map { $0.permissions.count } }.flatMap { $0 }
            #expect(perms == [0])
            // 601 s later the allocation and its relay socket are gone.
            clock.advance(by: 300); server.tick()
            #expect(server.stats().allocations == 0)
            #expect(server.stats().allocationsExpired == 1)
            // The descriptor is closed in the source's cancel handler, which runs asynchronously.
            #expect(eventually { server.stats().relaySockets == 0 })
        }
    }
}

@Suite("TURN details on real relay sockets: external addresses, DONT-FRAGMENT")
struct TurnDetailTests {
    @Test("XOR-RELAYED-ADDRESS advertises relay.externalIPv4 with the bound port")
    func externalAddress() throws {
        try withTurnServer(settings: { $0.relay.externalIPv4 = IPAddress("203.0.113.7") }) { server, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            let relay = try #require(relayedAddresses(try client.allocate()).first)
            #expect(relay.ip == IPAddress("203.0.113.7"))
            let bound = server.workers.flatMap { w in w.queue.sync { w.relays.values.map(\.bound) } }
            #expect(bound.map(\.port) == [relay.port])
            #expect(bound.first?.ip == .loopbackV4)
        }
    }

    @Test("DONT-FRAGMENT sets IP_PMTUDISC_DO on the relay socket")
    func dontFragment() throws {
        try withTurnServer { server, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try client.allocate([.dontFragment]).type.messageClass == .successResponse)
            let plain = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try plain.allocate().type.messageClass == .successResponse)
            var modes: [Int32] = []
            for w in server.workers {
                w.queue.sync {
                    for fd in w.relays.keys {
                        var mode: Int32 = -1
                        var len = socklen_t(MemoryLayout<Int32>.size)
                        getsockopt(fd, Int32(IPPROTO_IP), IP_MTU_DISCOVER, &mode, &len)
                        modes.append(mode)
                    }
                }
            }
            #expect(modes.count == 2, "\(modes)")
            #expect(modes.filter { $0 == Int32(IP_PMTUDISC_DO) }.count == 1, "\(modes)")
        }
    }
}

/// Whether a UDP socket could bind `address` now (the kernel's view of a port being held).
func canBindUDP(_ address: TransportAddress) -> Bool {
    let fd = socket(address.ip.family == .ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return TernSocketAddress(address).withSockAddr { Glibc.bind(fd, $0, $1) } == 0
}
