import STUN
import Testing
@testable import TernCore

/// Lifetimes run on the handler's clock, moved by the test: permissions (RFC 8656 section 9, 300 s),
/// channel bindings (section 11, 600 s), allocations (section 7) and port reservations (section 14.9).
@Suite("Expiry on the handler's tick, with a clock only the test moves")
struct ExpiryTests {
    @Test("A permission ends after 300 s unless refreshed; relaying to it stops both ways")
    func permission() throws {
        let h = TurnHarness()
        let c = h.client()
        let relay = try #require(c.relayed(c.allocate([.lifetime(3600)])).first)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a), .xorPeerAddress(Peers.b)]).isSuccess)
        h.advance(by: 200)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.b)]).isSuccess)
        h.advance(by: 100)
        let a = try #require(h.handler.allocations.all.first)
        #expect(Array(a.permissions.keys) == [Peers.b.ip])
        c.sendIndication(to: Peers.a, [1])
        #expect(h.sent.isEmpty)
        #expect(h.fromPeer(Peers.a, to: relay, [1]) == nil)
        c.sendIndication(to: Peers.b, [2])
        #expect(h.sent.count == 1)
        h.advance(by: 200)
        #expect(a.permissions.isEmpty)
    }

    @Test("A channel ends after 600 s with its reverse entry; its number may then go to another peer")
    func channel() throws {
        let h = TurnHarness()
        let c = h.client()
        let relay = try #require(c.relayed(c.allocate([.lifetime(3600)])).first)
        #expect(c.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.a)]).isSuccess)
        // Keep the permission alive on its own; the channel is not refreshed.
        h.advance(by: 299)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
        h.advance(by: 299)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
        h.advance(by: 1)
        let a = try #require(h.handler.allocations.all.first)
        #expect(a.channels.count == 1)
        h.advance(by: 1)
        #expect(a.channels.isEmpty)
        #expect(a.channelByPeer.isEmpty)
        // The peer's datagrams now come as Data indications; ChannelData on the old number is dropped.
        let m = try Message.decode(try #require(h.fromPeer(Peers.a, to: relay, [5])))
        #expect(m.type.method == .data)
        c.sendChannelData(0x4000, [1])
        #expect(h.sent.isEmpty)
        #expect(c.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.b)]).isSuccess)
    }

    @Test("An allocation ends at its lifetime: relays closed, quota given back, counted as expired")
    func allocation() throws {
        let h = TurnHarness()
        let c = h.client()
        #expect(c.allocate([.additionalAddressFamily(.ipv6)]).isSuccess)
        #expect(h.relays.openCount == 2)
        h.advance(by: 599)
        #expect(h.handler.allocations.count == 1)
        h.advance(by: 1)
        #expect(h.handler.allocations.count == 0)
        #expect(h.relays.openCount == 0)
        #expect(h.turn.shared.allocations(of: "alice") == 0)
        #expect(h.handler.turnCounters.allocationsExpired == 1)
        #expect(h.handler.turnCounters.ended[AllocationEndReason.expired.rawValue] == 1)
        #expect(c.request(.refresh, []).code == 437)
    }

    @Test("A port reservation nobody redeems is given back after 30 s")
    func reservation() throws {
        let h = TurnHarness()
        let m = try #require(h.client().allocate([.evenPort(reserve: true)]))
        guard case .reservationToken(let token)? = m.first(.reservationToken) else { Issue.record("no token: \(m)"); return }
        #expect(h.relays.openCount == 2)
        #expect(h.turn.shared.reservationCount == 1)
        h.advance(by: 30)
        #expect(h.turn.shared.reservationCount == 0)
        #expect(h.relays.openCount == 1)
        #expect(h.client("198.51.100.1:40001").allocate([.reservationToken(token)]).code == 508)
    }
}

/// RFC 8656 section 7.2 / 14.6 and 14.9: EVEN-PORT and RESERVATION-TOKEN; section 7.2 with
/// ADDITIONAL-ADDRESS-FAMILY: dual allocations.
@Suite("EVEN-PORT, RESERVATION-TOKEN and dual allocations")
struct AllocateOptionTests {
    @Test("EVEN-PORT gives an even port; with R the next one is held for a RESERVATION-TOKEN, redeemed once")
    func evenPort() throws {
        let h = TurnHarness(ports: 50_001...50_010)
        let plain = try #require(h.client("198.51.100.1:1").allocate([.evenPort(reserve: false)]))
        #expect(plain.first(.reservationToken) == nil)
        #expect(try #require(plain.xorRelayedAddress).port % 2 == 0)
        let first = try #require(h.client("198.51.100.1:2").allocate([.evenPort(reserve: true)]))
        let relay = try #require(first.xorRelayedAddress)
        #expect(relay.port % 2 == 0)
        guard case .reservationToken(let token)? = first.first(.reservationToken) else { Issue.record("no token"); return }
        #expect(token.count == 8)
        let second = try #require(h.client("198.51.100.1:3").allocate([.reservationToken(token)]))
        #expect(second.xorRelayedAddress?.port == relay.port + 1, "\(second)")
        #expect(h.client("198.51.100.1:4").allocate([.reservationToken(token)]).code == 508)
        #expect(h.relays.openCount == 3)
        #expect(h.turn.shared.reservationCount == 0)
    }

    @Test("A dual allocation has one relay per family; an unavailable IPv6 still allocates IPv4 with ADDRESS-ERROR-CODE 440")
    func dual() throws {
        let h = TurnHarness()
        let c = h.client()
        let m = try #require(c.allocate([.additionalAddressFamily(.ipv6)]))
        #expect(c.relayed(m).map(\.ip.family) == [.ipv4, .ipv6])
        #expect(m.first(.addressErrorCode) == nil)
        let off = TurnHarness(ipv6: false)
        let half = try #require(off.client().allocate([.additionalAddressFamily(.ipv6)]))
        #expect(half.isSuccess)
        #expect(off.client().relayed(half).map(\.ip.family) == [.ipv4])
        guard case .addressErrorCode(let family, let code, _)? = half.first(.addressErrorCode) else {
            Issue.record("no ADDRESS-ERROR-CODE: \(half)"); return
        }
        #expect(family == .ipv6)
        #expect(code == 440)
        // Only IPv6 may be asked for in addition (section 18.11): IPv4 is 440.
        #expect(h.client("198.51.100.1:40001").allocate([.additionalAddressFamily(.ipv4)]).code == 440)
        // coturn's clients use the draft code point 0x8032 for it: honoured too.
        let draft = try #require(h.client("198.51.100.1:40002").allocate([.unknown(type: AttributeType(rawValue: 0x8032), value: [2, 0, 0, 0])]))
        #expect(draft.attributes.filter { $0.type == .xorRelayedAddress }.count == 2)
    }

    @Test("REQUESTED-ADDRESS-FAMILY IPv6 allocates an IPv6 relay only")
    func ipv6Only() throws {
        let h = TurnHarness()
        let c = h.client()
        #expect(c.relayed(c.allocate([.requestedAddressFamily(.ipv6)])) .map(\.ip) == [h.relays.ipv6])
    }
}
