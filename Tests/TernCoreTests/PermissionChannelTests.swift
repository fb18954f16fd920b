import STUN
import Testing
@testable import TernCore

/// RFC 8656 section 9.2 (CreatePermission) and 11.2 (ChannelBind) through the handler, and the
/// invariants `Allocation` keeps between channels, peers and permissions.
@Suite("CreatePermission and ChannelBind over the in-memory relays")
struct PermissionChannelTests {
    func allocated(_ limits: @escaping (inout LimitsConfig) -> Void = { _ in }) -> (TurnHarness, TestClient) {
        let h = TurnHarness(limits: limits)
        let c = h.client()
        #expect(c.allocate().isSuccess)
        return (h, c)
    }

    @Test("CreatePermission installs one permission per IP, ports ignored; 400 without XOR-PEER-ADDRESS")
    func createPermission() throws {
        let (h, c) = allocated()
        #expect(c.request(.createPermission, []).code == 400)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.aOtherPort)]).isSuccess)
        let a = try #require(h.handler.allocations.all.first)
        #expect(Array(a.permissions.keys) == [Peers.a.ip])
        #expect(a.permissions[Peers.a.ip] == h.clock.monotonicSeconds + 300)
        #expect(h.handler.turnCounters.permissionsCreated == 1)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.b), .xorPeerAddress(Peers.a)]).isSuccess)
        #expect(a.permissions.count == 2)
    }

    @Test("403 for a peer the policy refuses, 443 for a family without a relay")
    func refused() {
        let (h, c) = allocated()
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.denied)]).code == 403)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.v6)]).code == 443)
        #expect(c.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.denied)]).code == 403)
        #expect(c.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.v6)]).code == 443)
        #expect(h.handler.turnCounters.refusedByPolicy == 2)
        #expect(h.handler.allocations.all.first?.permissions.isEmpty == true)
    }

    @Test("All or nothing: one refused peer and no permission is installed or refreshed")
    func allOrNothing() throws {
        let (h, c) = allocated()
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
        let installedAt = h.clock.monotonicSeconds
        h.advance(by: 100)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a), .xorPeerAddress(Peers.b),
                                              .xorPeerAddress(Peers.denied)]).code == 403)
        let a = try #require(h.handler.allocations.all.first)
        #expect(a.permissions == [Peers.a.ip: installedAt + 300])
    }

    @Test("508 past the permissions limit, counted over the whole request")
    func permissionLimit() throws {
        let (h, c) = allocated { $0.permissionsPerAllocation = 2 }
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
        let third = TransportAddress("203.0.113.7:1")!
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.b), .xorPeerAddress(third)]).code == 508)
        #expect(h.handler.allocations.all.first?.permissions.count == 1)
        // Refreshing an existing one is not a new one.
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a), .xorPeerAddress(Peers.b)]).isSuccess)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
    }

    @Test("ChannelBind: the number's range, and a missing peer, are 400")
    func channelRange() {
        let (_, c) = allocated()
        #expect(c.request(.channelBind, [.channelNumber(0x3FFF), .xorPeerAddress(Peers.a)]).code == 400)
        #expect(c.request(.channelBind, [.channelNumber(0x8000), .xorPeerAddress(Peers.a)]).code == 400)
        #expect(c.request(.channelBind, [.xorPeerAddress(Peers.a)]).code == 400)
        #expect(c.request(.channelBind, [.channelNumber(0x4001)]).code == 400)
        // RFC 5766's wider range (up to 0x7FFF) is accepted, for clients such as coturn's.
        #expect(c.request(.channelBind, [.channelNumber(0x7FFF), .xorPeerAddress(Peers.a)]).isSuccess)
    }

    @Test("ChannelBind installs the permission with the channel, and a rebind refreshes both")
    func bindInstallsPermission() throws {
        let (h, c) = allocated()
        #expect(c.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.a)]).isSuccess)
        let a = try #require(h.handler.allocations.all.first)
        let t0 = h.clock.monotonicSeconds
        #expect(a.channels[0x4000] == Allocation.ChannelBinding(peer: Peers.a, expiry: t0 + 600))
        #expect(a.channelByPeer[Peers.a] == 0x4000)
        #expect(a.permissions[Peers.a.ip] == t0 + 300)
        #expect(h.handler.turnCounters.channelsBound == 1)
        h.advance(by: 200)
        #expect(c.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.a)]).isSuccess)
        #expect(a.channels[0x4000]?.expiry == t0 + 800)
        #expect(a.permissions[Peers.a.ip] == t0 + 500)
        #expect(h.handler.turnCounters.channelsBound == 1)
    }

    @Test("The two conflicts of RFC 8656 section 11.2 are 400 and change nothing")
    func conflicts() throws {
        let (h, c) = allocated()
        #expect(c.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(Peers.a)]).isSuccess)
        // The channel is bound to another peer (another port is another peer: channels are per address).
        #expect(c.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(Peers.aOtherPort)]).code == 400)
        // The peer is bound to another channel.
        #expect(c.request(.channelBind, [.channelNumber(0x4002), .xorPeerAddress(Peers.a)]).code == 400)
        let a = try #require(h.handler.allocations.all.first)
        #expect(a.channels.count == 1)
        #expect(a.channelByPeer == [Peers.a: 0x4001])
    }

    @Test("508 past the channel limit, and past the permission limit for a channel's new peer")
    func channelLimits() {
        let (h, c) = allocated { $0.channelsPerAllocation = 1; $0.permissionsPerAllocation = 2 }
        #expect(c.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.a)]).isSuccess)
        #expect(c.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(Peers.b)]).code == 508)
        let h2 = TurnHarness(limits: { $0.permissionsPerAllocation = 1 })
        let c2 = h2.client()
        #expect(c2.allocate().isSuccess)
        #expect(c2.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
        #expect(c2.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.b)]).code == 508)
        // A channel to the IP that already has a permission needs no new one.
        #expect(c2.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.aOtherPort)]).isSuccess)
        #expect(h.handler.allocations.all.first?.channels.count == 1)
    }

    @Test("Allocation.bindChannel reports each outcome and keeps the reverse index")
    func allocationInvariants() throws {
        let (h, c) = allocated()
        _ = c
        let a = try #require(h.handler.allocations.all.first)
        func bind(_ n: UInt16, _ p: TransportAddress, now: UInt64 = 100) -> ChannelBindOutcome {
            a.bindChannel(n, peer: p, now: now, channelLifetime: 600, permissionLifetime: 300, maxChannels: 2, maxPermissions: 2)
        }
        #expect(bind(0x4000, Peers.a) == .bound(new: true))
        #expect(bind(0x4000, Peers.a) == .bound(new: false))
        #expect(bind(0x4000, Peers.b) == .channelBoundToOtherPeer)
        #expect(bind(0x4001, Peers.a) == .peerBoundToOtherChannel)
        #expect(bind(0x4001, Peers.b) == .bound(new: true))
        #expect(bind(0x4002, TransportAddress("203.0.113.9:1")!) == .tooManyChannels)
        // Expiry drops both directions together.
        a.expire(now: 700)
        #expect(a.channels.isEmpty)
        #expect(a.channelByPeer.isEmpty)
        #expect(a.permissions.isEmpty)
        #expect(a.permit(Peers.a.ip, now: 700, lifetime: 300))
        #expect(!a.permit(Peers.a.ip, now: 701, lifetime: 300))
        #expect(bind(0x4002, TransportAddress("203.0.113.9:1")!, now: 701) == .bound(new: true))
        #expect(bind(0x4003, TransportAddress("203.0.113.10:1")!, now: 701) == .tooManyPermissions)
    }
}
