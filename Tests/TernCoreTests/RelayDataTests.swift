import STUN
import Testing
@testable import TernCore

/// Relaying through the handler and the in-memory relays: Send and Data indications (RFC 8656
/// section 10) and ChannelData (section 12), both directions.
@Suite("Relayed data over the in-memory relays")
struct RelayDataTests {
    @Test("Send indications reach the peer only with a permission; Data indications come back")
    func indications() throws {
        let h = TurnHarness()
        let c = h.client()
        let relay = try #require(c.relayed(c.allocate()).first)
        // No permission yet: dropped and counted.
        c.sendIndication(to: Peers.a, [1, 2, 3])
        #expect(h.sent.isEmpty)
        #expect(h.handler.turnCounters.droppedNoPermission == 1)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
        c.sendIndication(to: Peers.a, Array("hello peer".utf8))
        #expect(h.sent == [.init(from: relay, to: Peers.a, bytes: Array("hello peer".utf8))])
        // Any port of the permitted IP may answer (permissions are per IP, section 9).
        let back = try Message.decode(try #require(h.fromPeer(Peers.aOtherPort, to: relay, Array("hello client".utf8))))
        #expect(back.type == MessageType(method: .data, class: .indication))
        #expect(back.xorPeerAddresses == [Peers.aOtherPort])
        #expect(back.data == Array("hello client".utf8))
        // Another IP has none: dropped and counted on the allocation.
        #expect(h.fromPeer(Peers.b, to: relay, [0xAA]) == nil)
        let a = try #require(h.handler.allocations.all.first)
        #expect(a.counters.packetsToPeer == 1)
        #expect(a.counters.bytesToPeer == 10)
        #expect(a.counters.packetsToClient == 1)
        #expect(a.counters.droppedNoPermission == 1)
        #expect(h.handler.turnCounters.droppedNoPermission == 2)
    }

    @Test("ChannelData both ways once a channel is bound; the peer's datagrams then come as ChannelData")
    func channelData() throws {
        let h = TurnHarness()
        let c = h.client()
        let relay = try #require(c.relayed(c.allocate()).first)
        // An unbound channel: dropped.
        c.sendChannelData(0x4000, [1])
        #expect(h.sent.isEmpty)
        #expect(h.handler.turnCounters.droppedNoChannel == 1)
        #expect(c.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.a)]).isSuccess)
        c.sendChannelData(0x4000, [9, 8, 7])
        #expect(h.sent.last == .init(from: relay, to: Peers.a, bytes: [9, 8, 7]))
        // From the bound peer: ChannelData, unpadded over UDP.
        #expect(h.fromPeer(Peers.a, to: relay, [6, 5, 4, 3, 2]) == [0x40, 0x00, 0x00, 0x05, 6, 5, 4, 3, 2])
        // From another port of the same IP (permitted, no channel): a Data indication.
        let other = try Message.decode(try #require(h.fromPeer(Peers.aOtherPort, to: relay, [1])))
        #expect(other.type.method == .data)
    }

    @Test("Over a stream connection, ChannelData to the client is padded to 4 bytes (section 12.5)")
    func streamPadding() throws {
        let h = TurnHarness()
        let c = h.client(transport: .tcp)
        let relay = try #require(c.relayed(c.allocate()).first)
        #expect(c.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(Peers.a)]).isSuccess)
        c.sendChannelData(0x4001, [9, 9, 9])
        #expect(h.sent.last?.bytes == [9, 9, 9])
        #expect(h.fromPeer(Peers.a, to: relay, [1]) == [0x40, 0x01, 0x00, 0x01, 1, 0, 0, 0])
    }

    @Test("Data from a 5-tuple without an allocation is dropped and counted")
    func noAllocation() {
        let h = TurnHarness()
        let c = h.client()
        c.sendIndication(to: Peers.a, [1])
        c.sendChannelData(0x4000, [1])
        #expect(h.handler.turnCounters.droppedNoAllocation == 2)
        #expect(h.sent.isEmpty)
    }

    @Test("A dual allocation relays each family from its own relay address")
    func dualAllocation() throws {
        let h = TurnHarness()
        let c = h.client()
        let m = try #require(c.allocate([.additionalAddressFamily(.ipv6)]))
        let relays = c.relayed(m)
        #expect(relays.map(\.ip) == [h.relays.ipv4, h.relays.ipv6])
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a), .xorPeerAddress(Peers.v6)]).isSuccess)
        c.sendIndication(to: Peers.v6, [6])
        c.sendIndication(to: Peers.a, [4])
        #expect(h.sent.map(\.from) == [relays[1], relays[0]])
        #expect(h.fromPeer(Peers.v6, to: relays[1], [1]) != nil)
    }

    @Test("Bandwidth per allocation: past this second's budget payload is dropped; the next second refills")
    func bandwidth() throws {
        let h = TurnHarness(limits: { $0.bandwidthPerAllocation = 1000 })
        let c = h.client()
        let relay = try #require(c.relayed(c.allocate()).first)
        #expect(c.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.a)]).isSuccess)
        let payload = [UInt8](repeating: 7, count: 200)
        for _ in 0..<8 { c.sendChannelData(0x4000, payload) }
        #expect(h.sent.count == 5)
        // Peer to client draws from the same budget.
        #expect(h.fromPeer(Peers.a, to: relay, payload) == nil)
        #expect(h.handler.turnCounters.droppedBandwidth == 4)
        h.advance(by: 1)
        #expect(h.fromPeer(Peers.a, to: relay, payload) != nil)
    }

    @Test("Per-user traffic survives the allocation; TURN REST API usernames count under their user id")
    func perUserCounters() throws {
        #expect(RequestHandler.userKey("1764100000:carol") == "carol")
        #expect(RequestHandler.userKey("alice") == "alice")
        #expect(RequestHandler.userKey("x1:y") == "x1:y")
        let h = TurnHarness()
        let c = h.client()
        #expect(c.allocate().isSuccess)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
        c.sendIndication(to: Peers.a, [1, 2, 3, 4])
        #expect(h.handler.counters(forUser: "alice").allocations == 1)
        #expect(c.request(.refresh, [.lifetime(0)]).isSuccess)
        let after = h.handler.counters(forUser: "alice")
        #expect(after.allocations == 0)
        #expect(after.traffic.bytesToPeer == 4)
        #expect(after.traffic.packetsToPeer == 1)
    }
}
