import STUN
import Testing
@testable import TernCore

/// RFC 8656 section 7.3: receiving a Refresh request.
@Suite("Refresh (RFC 8656 section 7.3) over the in-memory relays")
struct RefreshTests {
    @Test("LIFETIME is clamped to [default, max]; the expiry moves with the clock")
    func clamped() throws {
        let h = TurnHarness()
        let c = h.client()
        #expect(c.allocate().isSuccess)
        #expect(c.request(.refresh, [.lifetime(99_999)])?.lifetime == 3600)
        #expect(c.request(.refresh, [.lifetime(10)])?.lifetime == 600)
        #expect(c.request(.refresh, [])?.lifetime == 600)
        let a = try #require(h.handler.allocations.all.first)
        #expect(a.expiry == h.clock.monotonicSeconds + 600)
        h.advance(by: 500)
        #expect(c.request(.refresh, [.lifetime(1200)])?.lifetime == 1200)
        #expect(a.expiry == h.clock.monotonicSeconds + 1200)
        // Past the first 600 s, the refreshed allocation lives on.
        h.advance(by: 700)
        #expect(h.handler.allocations.count == 1)
    }

    @Test("LIFETIME 0 deletes the allocation and frees its relay and quota; then 437")
    func delete() throws {
        let h = TurnHarness(limits: { $0.allocationsPerUser = 1 })
        let c = h.client()
        #expect(c.allocate().isSuccess)
        #expect(h.relays.openCount == 1)
        let deleted = try #require(c.request(.refresh, [.lifetime(0)]))
        #expect(deleted.isSuccess)
        #expect(deleted.lifetime == 0)
        #expect(h.handler.allocations.count == 0)
        #expect(h.relays.openCount == 0)
        #expect(h.turn.shared.allocations(of: "alice") == 0)
        #expect(h.handler.turnCounters.allocationsDeleted == 1)
        #expect(h.handler.turnCounters.ended[AllocationEndReason.refreshed.rawValue] == 1)
        #expect(c.request(.refresh, [.lifetime(0)]).code == 437)
        // The quota of one is free again.
        #expect(h.client("198.51.100.1:40001").allocate().isSuccess)
    }

    @Test("REQUESTED-ADDRESS-FAMILY names a family of the allocation, or 443")
    func family() {
        let h = TurnHarness()
        let c = h.client()
        #expect(c.allocate().isSuccess)
        #expect(c.request(.refresh, [.requestedAddressFamily(.ipv4)]).isSuccess)
        #expect(c.request(.refresh, [.requestedAddressFamily(.ipv6)]).code == 443)
        let dual = h.client("198.51.100.1:40001")
        #expect(dual.allocate([.additionalAddressFamily(.ipv6)]).isSuccess)
        #expect(dual.request(.refresh, [.requestedAddressFamily(.ipv6)]).isSuccess)
    }

    @Test("Refresh, CreatePermission and ChannelBind without an allocation get 437")
    func noAllocation() {
        let h = TurnHarness()
        let c = h.client()
        #expect(c.request(.refresh, []).code == 437)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a)]).code == 437)
        #expect(c.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.a)]).code == 437)
        #expect(h.handler.turnCounters.errors[437] == 3)
    }
}
