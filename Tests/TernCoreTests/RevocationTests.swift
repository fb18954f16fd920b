import STUN
import Testing
@testable import TernCore

/// Credentials that end (issue 13, points 1 and 2): every request on an allocation is checked
/// against the users and secrets in force now, not only against the key the allocation was made
/// with, and an operator can end every allocation of one user at once.
@Suite("Credentials are re-checked on every request; revocation")
struct RevocationTests {
    /// The harness's context with other users and secrets: what a SIGHUP reload hands the handler
    /// (the nonce key and the shared state stay).
    static func reloaded(_ h: TurnHarness, users: [String: String], secrets: [String]) -> TurnContext {
        TurnContext(realm: h.turn.realm, credentials: CredentialStore(realm: h.turn.realm, users: users, secrets: secrets),
                    nonces: h.turn.nonces, policy: h.turn.policy, settings: h.turn.settings, shared: h.turn.shared)
    }

    @Test("A user removed by a reload gets 401 on Refresh, CreatePermission and ChannelBind, and its allocation runs out; a user still configured goes on")
    func removedUser() {
        let h = TurnHarness()
        let alice = h.client("198.51.100.1:1")
        let bob = h.client("198.51.100.2:1", username: "bob")
        #expect(alice.allocate().isSuccess)
        #expect(bob.allocate().isSuccess)
        #expect(alice.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
        h.handler.reconfigure(turn: Self.reloaded(h, users: ["bob": TurnHarness.users["bob"]!], secrets: [TurnHarness.secret]))
        #expect(alice.request(.refresh, [.lifetime(3600)]).code == 401)
        #expect(alice.request(.createPermission, [.xorPeerAddress(Peers.b)]).code == 401)
        #expect(alice.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.a)]).code == 401)
        #expect(h.handler.turnCounters.auth.revoked >= 3)
        // Bob's nonce and allocation carry on, untouched by the reload.
        #expect(bob.request(.refresh, [.lifetime(3600)]).isSuccess)
        #expect(bob.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
        // Alice's allocation ends at its lifetime (600 s): the refresh to 3600 s was refused.
        h.advance(by: 601)
        #expect(h.handler.allocations.count == 1)
        #expect(h.handler.allocations.all.first?.username == "bob")
    }

    @Test("A changed password revokes the allocations made with the old one")
    func changedPassword() {
        let h = TurnHarness()
        let alice = h.client("198.51.100.1:1")
        #expect(alice.allocate().isSuccess)
        h.handler.reconfigure(turn: Self.reloaded(h, users: ["alice": "new-password", "bob": "builder"], secrets: []))
        #expect(alice.request(.refresh, [.lifetime(600)]).code == 401)
    }

    @Test("A TURN REST username past its expiry gets 401 on its allocation; rotating the secret out revokes a live one")
    func restCredentials() {
        let h = TurnHarness()
        let expiry = h.handler.unixNow + 60
        let username = "\(expiry):carol"
        let carol = h.client("198.51.100.3:1", username: username,
                             password: CredentialStore.restPassword(secret: TurnHarness.secret, username: username))
        #expect(carol.allocate().isSuccess)
        #expect(carol.request(.refresh, [.lifetime(3600)]).isSuccess)
        // Past the username's expiry: refused, though the allocation (3600 s) still lives.
        h.advance(by: 61)
        #expect(h.handler.allocations.count == 1)
        #expect(carol.request(.refresh, [.lifetime(3600)]).code == 401)
        #expect(carol.request(.createPermission, [.xorPeerAddress(Peers.a)]).code == 401)
        #expect(h.handler.turnCounters.auth.expiredCredentials >= 2)

        // A credential still in its lifetime, revoked by rotating the secret out.
        let later = "\(h.handler.unixNow + 3600):dave"
        let dave = h.client("198.51.100.4:1", username: later,
                            password: CredentialStore.restPassword(secret: TurnHarness.secret, username: later))
        #expect(dave.allocate().isSuccess)
        h.handler.reconfigure(turn: Self.reloaded(h, users: TurnHarness.users, secrets: ["s3cret", "next-secret"]))
        #expect(dave.request(.refresh, [.lifetime(600)]).isSuccess)  // old secret still listed: valid
        h.handler.reconfigure(turn: Self.reloaded(h, users: TurnHarness.users, secrets: ["next-secret"]))
        #expect(dave.request(.refresh, [.lifetime(600)]).code == 401)
    }

    @Test("deleteAllocations(ofUser:) ends every allocation of a static user, or of a REST user by its <id>, and counts them")
    func deleteByUser() {
        let h = TurnHarness()
        for port in 1...3 { #expect(h.client("198.51.100.1:\(port)").allocate().isSuccess) }
        #expect(h.client("198.51.100.2:1", username: "bob").allocate().isSuccess)
        for (port, expiry) in [(1, 100), (2, 200)] {
            let name = "\(h.handler.unixNow + UInt64(expiry)):erin"
            #expect(h.client("198.51.100.5:\(port)", username: name,
                             password: CredentialStore.restPassword(secret: TurnHarness.secret, username: name)).allocate().isSuccess)
        }
        #expect(h.turn.shared.allocations(of: "alice") == 3)
        #expect(h.handler.deleteAllocations(ofUser: "alice") == 3)
        #expect(h.handler.deleteAllocations(ofUser: "alice") == 0)
        #expect(h.handler.deleteAllocations(ofUser: "erin") == 2)
        #expect(h.turn.shared.allocations(of: "alice") == 0)
        #expect(h.handler.allocations.count == 1)
        #expect(h.relays.openCount == 1)
        #expect(h.handler.turnCounters.allocationsDeleted == 5)
    }
}

/// Issue 13, point 6: the port held for EVEN-PORT's R bit counts as an allocation for every quota
/// while it lives, so Allocate-with-R then Refresh-0 in a loop cannot empty the port range.
@Suite("EVEN-PORT reservations count against the quotas")
struct ReservationQuotaTests {
    @Test("A reservation holds one count per user, per IP and in total until it is redeemed or expires")
    func reservationCounts() throws {
        let h = TurnHarness(limits: { $0.allocationsPerIP = 3; $0.allocationsPerUser = 0 })
        let c = h.client("198.51.100.1:1")
        let m = try #require(c.allocate([.evenPort(reserve: true)]))
        #expect(m.isSuccess)
        guard case .reservationToken(let token)? = m.first(.reservationToken) else { Issue.record("no token"); return }
        #expect(h.turn.shared.allocations(of: "alice") == 2)
        // Delete the allocation: the reservation still holds its count (it lives 30 s).
        #expect(c.request(.refresh, [.lifetime(0)]).isSuccess)
        #expect(h.turn.shared.allocations(of: "alice") == 1)
        #expect(h.client("198.51.100.1:2").allocate().isSuccess)
        #expect(h.client("198.51.100.1:3").allocate().isSuccess)
        // IP quota 3: two allocations plus the reservation. A fourth is refused.
        #expect(h.client("198.51.100.1:4").allocate().code == 486)
        // Redeeming the token passes its count on: allowed at the quota.
        #expect(h.client("198.51.100.1:5").allocate([.reservationToken(token)]).isSuccess)
        #expect(h.turn.shared.allocations(of: "alice") == 3)
        #expect(h.client("198.51.100.1:6").allocate().code == 486)
    }

    @Test("An R-bit Allocate needs room for two; an expired reservation gives its count back")
    func expiryGivesBack() throws {
        let h = TurnHarness(limits: { $0.allocationsPerIP = 2 })
        #expect(h.client("198.51.100.1:1").allocate().isSuccess)
        #expect(h.client("198.51.100.1:2").allocate([.evenPort(reserve: true)]).code == 486)
        #expect(h.turn.shared.allocations(of: "alice") == 1)
        let other = h.client("198.51.100.2:1")
        #expect(other.allocate([.evenPort(reserve: true)]).isSuccess)
        #expect(other.request(.refresh, [.lifetime(0)]).isSuccess)
        #expect(h.turn.shared.allocations(of: "alice") == 2)  // one allocation, one reservation
        h.advance(by: UInt64(TurnSettings.reservationLifetime) + 1)
        #expect(h.turn.shared.reservationCount == 0)
        #expect(h.turn.shared.allocations(of: "alice") == 1)
    }

    @Test("The Allocate-R / Refresh-0 loop is bounded by the per-IP quota, not by the port range")
    func loopIsBounded() {
        let h = TurnHarness(ports: 50_000...50_999, limits: { $0.allocationsPerIP = 10; $0.allocationRatePerIP = 0 })
        var made = 0
        for port in 1...200 {
            let c = h.client("198.51.100.1:\(port)")
            guard c.allocate([.evenPort(reserve: true)]).isSuccess else { continue }
            made += 1
            #expect(c.request(.refresh, [.lifetime(0)]).isSuccess)
        }
        // Each round leaves a reservation holding one count, and a round needs room for two.
        #expect(made == 9)
        #expect(h.turn.shared.reservationCount == 9)
        #expect(h.relays.openCount <= 20)
    }
}
