import STUN
import Testing
@testable import TernCore

/// RFC 8656 section 7.2: receiving an Allocate request, and its errors, through the handler.
@Suite("Allocate (RFC 8656 section 7.2) over the in-memory relays")
struct AllocateTests {
    @Test("An unauthenticated Allocate is challenged with 401, REALM, NONCE and PASSWORD-ALGORITHMS, no integrity")
    func challenge() throws {
        let h = TurnHarness()
        let c = h.client()
        let m = try #require(c.request(.allocate, [.requestedTransport(protocolNumber: 17)], authenticated: false))
        #expect(m.code == 401)
        #expect(m.realm == TurnHarness.realm)
        #expect(m.nonce?.hasPrefix("obMatJos2") == true)
        #expect(m.first(.passwordAlgorithms) == .passwordAlgorithms([PasswordAlgorithmEntry(.md5), PasswordAlgorithmEntry(.sha256)]))
        #expect(m.first(.messageIntegrity) == nil)
        #expect(h.relays.openCount == 0)
        #expect(h.handler.turnCounters.auth.challenged == 1)
    }

    @Test("Success: a relayed address from the relays, LIFETIME, XOR-MAPPED-ADDRESS, SOFTWARE and integrity")
    func success() throws {
        let h = TurnHarness()
        let c = h.client()
        let m = try #require(c.allocate())
        #expect(m.isSuccess, "\(m)")
        let relay = try #require(c.relayed(m).first)
        #expect(relay.ip == h.relays.ipv4)
        #expect(h.relays.ports.contains(relay.port))
        #expect(m.lifetime == 600)
        #expect(m.xorMappedAddress == c.context.client)
        #expect(m.software == "Tern test")
        #expect(m.first(.messageIntegrity) != nil)
        #expect(m.first(.fingerprint) != nil)
        #expect(h.handler.allocations.count == 1)
        #expect(h.relays.openCount == 1)
        #expect(h.handler.turnCounters.allocationsCreated == 1)
        // LIFETIME is clamped to [default, max] (RFC 8656 section 7.2 "desired lifetime").
        #expect(h.client("198.51.100.1:40001").allocate([.lifetime(99_999)])?.lifetime == 3600)
        #expect(h.client("198.51.100.1:40002").allocate([.lifetime(5)])?.lifetime == 600)
        #expect(h.client("198.51.100.1:40003").allocate([.lifetime(0)])?.lifetime == 600)
    }

    @Test("SHA-256 integrity is answered in kind; USERHASH works; TURN REST API credentials work until their time")
    func credentialVariants() throws {
        let h = TurnHarness()
        let sha = h.client()
        sha.useSHA256 = true
        let m = try #require(sha.allocate())
        #expect(m.isSuccess, "\(m)")
        #expect(m.first(.messageIntegritySHA256) != nil)
        #expect(m.first(.messageIntegrity) == nil)
        let hashed = h.client("198.51.100.1:40003", username: "bob")
        hashed.useUserhash = true
        #expect(hashed.allocate().isSuccess)
        let now = h.clock.unixSeconds
        let user = "\(now + 60):carol"
        let rest = h.client("198.51.100.1:40001", username: user,
                            password: CredentialStore.restPassword(secret: TurnHarness.secret, username: user))
        #expect(rest.allocate().isSuccess)
        let late = "\(now - 1):carol"
        let expired = h.client("198.51.100.1:40002", username: late,
                               password: CredentialStore.restPassword(secret: TurnHarness.secret, username: late))
        #expect(expired.allocate().code == 401)
        #expect(h.handler.turnCounters.auth.expiredCredentials >= 1)
    }

    @Test("401 for a wrong password or an unknown user")
    func wrongPassword() {
        let h = TurnHarness()
        #expect(h.client(password: "not it").allocate().code == 401)
        #expect(h.client("198.51.100.1:40001", username: "mallory", password: "x").allocate().code == 401)
        #expect(h.handler.allocations.count == 0)
        #expect(h.handler.turnCounters.auth.badIntegrity == 1)
        #expect(h.handler.turnCounters.auth.unknownUser == 1)
    }

    @Test("438 for a forged nonce and for one past its lifetime, with a fresh nonce that then works")
    func staleNonce() throws {
        let h = TurnHarness()
        let c = h.client()
        #expect(c.allocate([.lifetime(3600)]).isSuccess)
        let saved = c.nonce
        c.nonce = "obMatJos2AAAAnot-a-real-nonce"
        #expect(c.exchange(c.encode(.refresh, [])).code == 438)
        c.nonce = saved
        // The nonce lives 600 s (the allocation 3600 s): move the clock past it.
        h.advance(by: 601)
        let stale = try #require(c.exchange(c.encode(.refresh, [])))
        #expect(stale.code == 438)
        let fresh = try #require(stale.nonce)
        #expect(fresh != saved)
        #expect(stale.first(.messageIntegrity) == nil)
        c.nonce = fresh
        #expect(c.exchange(c.encode(.refresh, [])).isSuccess)
        #expect(h.handler.turnCounters.auth.staleNonce == 2)
    }

    @Test("400 without REQUESTED-TRANSPORT, 442 for a transport other than UDP or TCP; nothing is opened")
    func transport() {
        let h = TurnHarness()
        let c = h.client()
        #expect(c.request(.allocate, []).code == 400)
        #expect(c.request(.allocate, [.requestedTransport(protocolNumber: 132)]).code == 442)
        // RFC 6062 TCP relaying needs a stream connection to the server.
        #expect(c.request(.allocate, [.requestedTransport(protocolNumber: 6)]).code == 400)
        #expect(h.relays.openCount == 0)
        #expect(h.handler.allocations.count == 0)
    }

    @Test("420 lists the unknown comprehension-required attributes, each once; optional ones are ignored")
    func unknownAttributes() throws {
        let h = TurnHarness()
        let c = h.client()
        let m = try #require(c.allocate([.unknown(type: AttributeType(rawValue: 0x0041), value: [1]),
                                         .unknown(type: AttributeType(rawValue: 0x0042), value: []),
                                         .unknown(type: AttributeType(rawValue: 0x0041), value: [2]),
                                         .unknown(type: AttributeType(rawValue: 0x8041), value: [])]))
        #expect(m.code == 420)
        #expect(m.first(.unknownAttributes) == .unknownAttributes([AttributeType(rawValue: 0x0041), AttributeType(rawValue: 0x0042)]))
        // RFC 5780's CHANGE-REQUEST is known to the codec but not acted on by the server: 420 too.
        #expect(c.allocate([.changeRequest(changeIP: true, changePort: false)]).code == 420)
        #expect(h.handler.allocations.count == 0)
    }

    @Test("437 for a second Allocate on a 5-tuple with an allocation; a retransmission gets the first answer byte for byte")
    func mismatchAndRetransmission() throws {
        let h = TurnHarness()
        let c = h.client()
        // Learn the realm and a nonce first (no allocation yet: 437).
        #expect(c.request(.refresh, []).code == 437)
        let id = TransactionID.random()
        let bytes = c.encode(.allocate, [.requestedTransport(protocolNumber: 17), .lifetime(3600)], id: id)
        let first = try #require(c.send(bytes))
        #expect(try Message.decode(first).isSuccess)
        // The retransmission is answered even after the nonce went stale (before authentication).
        h.advance(by: 601)
        #expect(c.send(bytes) == first)
        #expect(h.relays.openCount == 1)
        #expect(c.allocate().code == 437)
        #expect(h.handler.allocations.count == 1)
    }

    @Test("441 when other credentials touch an allocation")
    func wrongCredentials() {
        let h = TurnHarness()
        let c = h.client()
        #expect(c.allocate().isSuccess)
        c.username = "bob"
        c.password = "builder"
        #expect(c.request(.refresh, []).code == 441)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a)]).code == 441)
        #expect(h.handler.turnCounters.auth.wrongCredentials == 2)
    }

    @Test("440: a family without a relay, or not a family at all; 400 for a malformed family attribute")
    func family() {
        let h = TurnHarness(ipv6: false)
        #expect(h.client().allocate([.requestedAddressFamily(.ipv6)]).code == 440)
        // Family 0x03 exists in no RFC: 440 (Address Family not Supported), not 400.
        var raw = h.client("198.51.100.1:40001")
        #expect(raw.allocate([.unknown(type: .requestedAddressFamily, value: [3, 0, 0, 0])]).code == 440)
        raw = h.client("198.51.100.1:40002")
        #expect(raw.allocate([.unknown(type: .requestedAddressFamily, value: [1, 0])]).code == 400)
        #expect(h.client("198.51.100.1:40003").allocate([.requestedAddressFamily(.ipv4)]).isSuccess)
        #expect(h.relays.openCount == 1)
    }

    @Test("A family whose public relay address is undiscovered (relay.discoverExternal) gets 440 before any quota or socket; a dual request keeps the other family")
    func withheldFamily() throws {
        let h = TurnHarness()
        func withholding(_ families: Set<AddressFamily>) {
            var settings = h.turn.settings
            settings.withheldFamilies = families
            h.handler.reconfigure(turn: TurnContext(realm: h.turn.realm, credentials: h.turn.credentials, nonces: h.turn.nonces,
                                                    policy: h.turn.policy, settings: settings, shared: h.turn.shared))
        }
        withholding([.ipv4])
        let refused = h.client().allocate()
        #expect(refused.code == 440)
        #expect(refused?.errorCode?.reason.contains("not discovered") == true)
        #expect(h.relays.openCount == 0)
        #expect(h.turn.shared.allocationCount == 0, "no quota taken")
        #expect(h.client("198.51.100.1:40001").allocate([.requestedAddressFamily(.ipv6)]).isSuccess)
        // IPv6 withheld: a dual request gets its IPv4 relay and ADDRESS-ERROR-CODE 440 for IPv6.
        withholding([.ipv6])
        let c = h.client("198.51.100.1:40002")
        let dual = try #require(c.allocate([.additionalAddressFamily(.ipv6)]))
        #expect(dual.isSuccess)
        #expect(c.relayed(dual).map(\.ip.family) == [.ipv4])
        guard case .addressErrorCode(let family, let code, _)? = dual.first(.addressErrorCode) else {
            Issue.record("no ADDRESS-ERROR-CODE"); return
        }
        #expect(family == .ipv6 && code == 440)
        // Settled again: both.
        withholding([])
        let both = h.client("198.51.100.1:40003")
        #expect(both.relayed(both.allocate([.additionalAddressFamily(.ipv6)])).count == 2)
    }

    @Test("Forbidden combinations are 400 (RFC 8656 section 7.2)")
    func combinations() {
        let h = TurnHarness()
        let c = h.client()
        #expect(c.allocate([.requestedAddressFamily(.ipv4), .additionalAddressFamily(.ipv6)]).code == 400)
        #expect(c.allocate([.reservationToken([1, 2, 3, 4, 5, 6, 7, 8]), .evenPort(reserve: false)]).code == 400)
        #expect(c.allocate([.reservationToken([1, 2, 3, 4, 5, 6, 7, 8]), .requestedAddressFamily(.ipv4)]).code == 400)
        #expect(c.allocate([.evenPort(reserve: true), .additionalAddressFamily(.ipv6)]).code == 400)
        #expect(c.allocate([.unknown(type: .evenPort, value: [0x80, 0, 0, 0])]).code == 400)
        #expect(c.allocate([.unknown(type: .reservationToken, value: [1, 2, 3, 4])]).code == 400)
        #expect(h.relays.openCount == 0)
        #expect(h.handler.allocations.count == 0)
    }

    @Test("While draining, Allocate gets 508, or 300 with ALTERNATE-SERVER; other methods go on")
    func draining() throws {
        let h = TurnHarness()
        let c = h.client()
        #expect(c.allocate().isSuccess)
        h.handler.draining = DrainConfig()
        #expect(h.client("198.51.100.1:40001").allocate().code == 508)
        let alternate = TransportAddress("192.0.2.99:3478")!
        h.handler.draining = DrainConfig(alternateServer: alternate)
        let redirected = try #require(h.client("198.51.100.1:40002").allocate())
        #expect(redirected.code == 300)
        #expect(redirected.first(.alternateServer) == .alternateServer(alternate))
        #expect(c.request(.refresh, []).isSuccess)
        #expect(h.relays.openCount == 1)
    }

    @Test("A method that is not a TURN request method gets 400")
    func unknownMethod() throws {
        let h = TurnHarness()
        let c = h.client()
        #expect(c.allocate().isSuccess)
        for method in [Method.data, .send, Method(rawValue: 0x0FF)] {
            #expect(c.request(method, []).code == 400, "\(method)")
        }
    }
}
