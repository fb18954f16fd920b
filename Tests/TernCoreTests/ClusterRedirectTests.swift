import STUN
import Testing
@testable import TernCore

/// The fleet's alternates of the tests: two IPv4 nodes, one IPv6 node with a name for TLS and DTLS.
private enum Alt {
    static let b4 = TransportAddress("192.0.2.20:3478")!
    static let c4 = TransportAddress("192.0.2.30:3478")!
    static let b6 = TransportAddress("[2001:db8::20]:3478")!
    static let domain = "turn-b.example"
    static let entries = ["192.0.2.20:3478", "192.0.2.30:3478", "[2001:db8::20]:3478#turn-b.example"]
    /// `drain.alternateServer` of the tests.
    static let drain4 = TransportAddress("192.0.2.99:3478")!
}

private let udp17 = Attribute.requestedTransport(protocolNumber: 17)

/// A harness whose TURN settings carry `cluster` (a reload's context: same credentials, nonces,
/// policy and shared state, so clients and live allocations carry on).
private func clusterHarness(capacity: Int? = 2, alternates: [String] = Alt.entries, total: Int = 50_000) -> TurnHarness {
    let h = TurnHarness(limits: { $0.allocationsTotal = total })
    var settings = h.turn.settings
    settings.cluster = ClusterConfig(alternateServers: alternates.map { AlternateServer($0)! }, capacity: capacity)
    h.handler.reconfigure(turn: TurnContext(realm: h.turn.realm, credentials: h.turn.credentials, nonces: h.turn.nonces,
                                            policy: h.turn.policy, settings: settings, shared: h.turn.shared))
    return h
}

/// The raw reply to an authenticated Allocate (after one 401 round for a client without a nonce).
private func rawAllocate(_ c: TestClient) throws -> [UInt8] {
    if c.nonce == nil {
        let challenge = try #require(c.exchange(c.encode(.allocate, [udp17], authenticated: false)))
        #expect(challenge.code == 401)
        c.realm = challenge.realm
        c.nonce = challenge.nonce
    }
    return try #require(c.send(c.encode(.allocate, [udp17])))
}

/// Checks a 300 Try Alternate: ALTERNATE-SERVER `to`, ALTERNATE-DOMAIN `domain` or none, no
/// allocation's attributes, and an integrity attribute (of the request's algorithm) that verifies
/// with the client's key and only with it.
private func expectRedirect(_ raw: [UInt8], to: TransportAddress, domain: String? = nil, _ c: TestClient,
                            sourceLocation: SourceLocation = #_sourceLocation) throws {
    let m = try Message.decode(raw)
    #expect(m.type == MessageType(method: .allocate, class: .errorResponse), sourceLocation: sourceLocation)
    #expect(m.code == 300, "\(m)", sourceLocation: sourceLocation)
    #expect(m.all(.alternateServer) == [.alternateServer(to)], sourceLocation: sourceLocation)
    #expect(m.all(.alternateDomain) == (domain.map { [.alternateDomain($0)] } ?? []), sourceLocation: sourceLocation)
    for absent in [AttributeType.xorRelayedAddress, .lifetime, .xorMappedAddress, .reservationToken] {
        #expect(m.first(absent) == nil, "\(absent)", sourceLocation: sourceLocation)
    }
    #expect(m.first(.fingerprint) != nil, sourceLocation: sourceLocation)
    let wrong = c.useSHA256 ? LongTermKey.sha256(username: c.username, realm: c.realm ?? "", password: "not it")
                            : LongTermKey.md5(username: c.username, realm: c.realm ?? "", password: "not it")
    try raw.withUnsafeBytes { buffer in
        let reader = try MessageReader(buffer)
        #expect(reader.fingerprintIsValid(), sourceLocation: sourceLocation)
        if c.useSHA256 {
            #expect(reader.checkMessageIntegritySHA256(key: c.key), sourceLocation: sourceLocation)
            #expect(!reader.checkMessageIntegritySHA256(key: wrong), sourceLocation: sourceLocation)
            #expect(!reader.hasMessageIntegrity, sourceLocation: sourceLocation)
        } else {
            #expect(reader.checkMessageIntegrity(key: c.key), sourceLocation: sourceLocation)
            #expect(!reader.checkMessageIntegrity(key: wrong), sourceLocation: sourceLocation)
            #expect(!reader.hasMessageIntegritySHA256, sourceLocation: sourceLocation)
        }
    }
}

private func redirected(_ h: TurnHarness) -> ServerSnapshot {
    var s = ServerSnapshot()
    h.handler.addFigures(to: &s, perUser: false)
    return s
}

@Suite("Cluster: 300 Try Alternate at cluster.capacity and while draining (RFC 8489 sections 10, 14.15, 14.16)")
struct ClusterRedirectTests {
    @Test("At capacity 2: two allocations, then 300 with ALTERNATE-SERVER B4, C4, B4 in turn, signed with the user's key")
    func roundRobin() throws {
        let h = clusterHarness()
        #expect(h.client("198.51.100.1:40000").allocate().isSuccess)
        #expect(h.client("198.51.100.2:40000", username: "bob").allocate().isSuccess)
        #expect(h.turn.shared.allocationCount == 2)
        let third = h.client("198.51.100.3:40000")
        try expectRedirect(try rawAllocate(third), to: Alt.b4, third)
        let fourth = h.client("198.51.100.4:40000", username: "bob")
        try expectRedirect(try rawAllocate(fourth), to: Alt.c4, fourth)
        // The same client again: the turn goes on, it is not per client.
        try expectRedirect(try rawAllocate(third), to: Alt.b4, third)
        #expect(h.handler.allocations.count == 2)
        #expect(h.relays.openCount == 2)
        #expect(h.handler.turnCounters.redirectedCapacity == 3)
        #expect(h.handler.turnCounters.redirectedDrain == 0)
        #expect(h.handler.turnCounters.allocationsCreated == 2)
        #expect(redirected(h).allocations.redirected == ["capacity": 3, "drain": 0])
    }

    @Test("A request signed with SHA-256 gets MESSAGE-INTEGRITY-SHA256 on its 300 (and no MESSAGE-INTEGRITY)")
    func sha256() throws {
        let h = clusterHarness(capacity: 1)
        #expect(h.client("198.51.100.1:40000").allocate().isSuccess)
        let sha = h.client("198.51.100.2:40000")
        sha.useSHA256 = true
        try expectRedirect(try rawAllocate(sha), to: Alt.b4, sha)
        let userhash = h.client("198.51.100.3:40000", username: "bob")
        userhash.useUserhash = true
        try expectRedirect(try rawAllocate(userhash), to: Alt.c4, userhash)
    }

    @Test("An IPv6 client gets the IPv6 alternate; its turn is its own family's")
    func ipv6Client() throws {
        let h = clusterHarness()
        #expect(h.client("198.51.100.1:40000").allocate().isSuccess)
        #expect(h.client("198.51.100.2:40000").allocate().isSuccess)
        let v6 = h.client("[2001:db8:2::1]:40000")
        let v4 = h.client("198.51.100.3:40000")
        try expectRedirect(try rawAllocate(v6), to: Alt.b6, v6)
        try expectRedirect(try rawAllocate(v4), to: Alt.b4, v4)
        try expectRedirect(try rawAllocate(v6), to: Alt.b6, v6)
        try expectRedirect(try rawAllocate(v4), to: Alt.c4, v4)
        #expect(h.handler.turnCounters.redirectedCapacity == 4)
    }

    @Test("ALTERNATE-DOMAIN over TLS and DTLS only, when the alternate has a name")
    func alternateDomain() throws {
        let h = clusterHarness(capacity: 1)
        #expect(h.client("198.51.100.1:40000").allocate().isSuccess)
        for transport in ClientTransport.allCases {
            let secure = transport == .tls || transport == .dtls
            let v6 = h.client("[2001:db8:2::1]:40000", transport: transport)
            try expectRedirect(try rawAllocate(v6), to: Alt.b6, domain: secure ? Alt.domain : nil, v6)
            // B4 has no name: no ALTERNATE-DOMAIN whatever the transport.
            let v4 = h.client("198.51.100.2:40000", transport: transport)
            let raw = try rawAllocate(v4)
            #expect(try Message.decode(raw).first(.alternateServer) != nil, "\(transport)")
            #expect(try Message.decode(raw).first(.alternateDomain) == nil, "\(transport)")
        }
    }

    @Test("No alternate of the client's family: allocated below allocationsTotal, 508 at it")
    func noAlternateOfFamily() throws {
        let h = clusterHarness(capacity: 1, alternates: ["192.0.2.20:3478"], total: 2)
        #expect(h.client("198.51.100.1:40000").allocate().isSuccess)
        let v6 = try #require(h.client("[2001:db8:2::1]:40000").allocate())
        #expect(v6.isSuccess, "\(v6)")
        #expect(v6.first(.alternateServer) == nil)
        #expect(h.handler.allocations.count == 2)
        // At allocationsTotal: the IPv4 client is still redirected, the IPv6 one refused.
        let v4 = h.client("198.51.100.2:40000")
        try expectRedirect(try rawAllocate(v4), to: Alt.b4, v4)
        let refused = try #require(h.client("[2001:db8:2::2]:40000").allocate())
        #expect(refused.code == 508)
        #expect(refused.first(.alternateServer) == nil)
        #expect(h.handler.turnCounters.refusedTotal == 1)
        #expect(h.handler.turnCounters.redirectedCapacity == 1)
    }

    @Test("No alternates at all: allocationsTotal answers 508, never 300; capacity 0 never redirects")
    func noAlternates() throws {
        let h = clusterHarness(capacity: nil, alternates: [], total: 1)
        #expect(h.client("198.51.100.1:40000").allocate().isSuccess)
        #expect(h.client("198.51.100.2:40000").allocate().code == 508)
        #expect(h.handler.turnCounters.redirectedCapacity == 0)
        // capacity 0 (none): alternates are only for draining; allocationsTotal still refuses.
        let none = clusterHarness(capacity: 0, total: 2)
        #expect(none.client("198.51.100.1:40000").allocate().isSuccess)
        #expect(none.client("198.51.100.2:40000").allocate().isSuccess)
        #expect(none.client("198.51.100.3:40000").allocate().code == 508)
        #expect(none.handler.turnCounters.redirectedCapacity == 0)
    }

    @Test("capacity null takes allocationsTotal: at it, the alternate rather than 508")
    func capacityFromAllocationsTotal() throws {
        let h = clusterHarness(capacity: nil, total: 1)
        #expect(h.client("198.51.100.1:40000").allocate().isSuccess)
        let c = h.client("198.51.100.2:40000")
        try expectRedirect(try rawAllocate(c), to: Alt.b4, c)
        #expect(h.handler.turnCounters.refusedTotal == 0)
    }

    @Test("An unauthenticated Allocate at capacity is challenged (401), never redirected; a wrong password stays 401")
    func unauthenticated() throws {
        let h = clusterHarness(capacity: 1)
        #expect(h.client("198.51.100.1:40000").allocate().isSuccess)
        let c = h.client("198.51.100.2:40000")
        let challenge = try #require(c.request(.allocate, [udp17], authenticated: false))
        #expect(challenge.code == 401)
        #expect(challenge.first(.alternateServer) == nil)
        #expect(challenge.first(.messageIntegrity) == nil)
        let wrong = try #require(h.client("198.51.100.3:40000", password: "not it").allocate())
        #expect(wrong.code == 401)
        #expect(wrong.first(.alternateServer) == nil)
        #expect(h.handler.turnCounters.redirectedCapacity == 0)
    }

    @Test("Only Allocate is redirected: Refresh and CreatePermission at capacity work; a retransmission or a second Allocate on the 5-tuple is not redirected")
    func otherMethods() throws {
        let h = clusterHarness(capacity: 1)
        let c = h.client("198.51.100.1:40000")
        let challenge = try #require(c.exchange(c.encode(.allocate, [udp17], authenticated: false)))
        (c.realm, c.nonce) = (challenge.realm, challenge.nonce)
        let first = c.encode(.allocate, [udp17])
        let original = try #require(c.send(first))
        #expect(try Message.decode(original).isSuccess)
        // At capacity now.
        #expect(c.send(first) == original, "RFC 8656 section 7.2: the retransmission gets the first answer")
        #expect(c.allocate().code == 437)
        #expect(c.request(.refresh, [.lifetime(600)]).isSuccess)
        #expect(c.request(.createPermission, [.xorPeerAddress(Peers.a)]).isSuccess)
        #expect(c.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(Peers.b)]).isSuccess)
        #expect(h.handler.turnCounters.redirectedCapacity == 0)
        // Meanwhile a new client is redirected.
        let other = h.client("198.51.100.2:40000")
        try expectRedirect(try rawAllocate(other), to: Alt.b4, other)
    }

    @Test("After an allocation is deleted (Refresh LIFETIME 0) the next Allocate succeeds again")
    func belowAgain() throws {
        let h = clusterHarness()
        let a = h.client("198.51.100.1:40000")
        #expect(a.allocate().isSuccess)
        #expect(h.client("198.51.100.2:40000").allocate().isSuccess)
        let c = h.client("198.51.100.3:40000")
        try expectRedirect(try rawAllocate(c), to: Alt.b4, c)
        #expect(a.request(.refresh, [.lifetime(0)]).isSuccess)
        #expect(h.turn.shared.allocationCount == 1)
        let m = try #require(c.allocate())
        #expect(m.isSuccess, "\(m)")
        #expect(c.relayed(m).count == 1)
        // Full again: the turn continues where it was.
        let d = h.client("198.51.100.4:40000")
        try expectRedirect(try rawAllocate(d), to: Alt.c4, d)
        #expect(h.handler.turnCounters.redirectedCapacity == 2)
    }

    @Test("Draining: drain.alternateServer, else the cluster's alternates in turn (by family), else 508; counted as drain")
    func draining() throws {
        let h = clusterHarness(capacity: 0)
        let live = h.client("198.51.100.1:40000")
        #expect(live.allocate().isSuccess)
        h.handler.draining = DrainConfig(alternateServer: Alt.drain4)
        for port in 40001...40002 {
            let c = h.client("198.51.100.2:\(port)")
            try expectRedirect(try rawAllocate(c), to: Alt.drain4, c)
        }
        // Over TLS the drain alternate has no name to send.
        let tls = h.client("198.51.100.3:40000", transport: .tls)
        try expectRedirect(try rawAllocate(tls), to: Alt.drain4, tls)
        h.handler.draining = DrainConfig()
        for expected in [Alt.b4, Alt.c4, Alt.b4] {
            let c = h.client("198.51.100.4:40000")
            try expectRedirect(try rawAllocate(c), to: expected, c)
        }
        let v6 = h.client("[2001:db8:2::1]:40000", transport: .dtls)
        try expectRedirect(try rawAllocate(v6), to: Alt.b6, domain: Alt.domain, v6)
        #expect(h.handler.turnCounters.redirectedDrain == 7)
        #expect(h.handler.turnCounters.redirectedCapacity == 0)
        #expect(redirected(h).allocations.redirected == ["capacity": 0, "drain": 7])
        // Other methods go on while draining.
        #expect(live.request(.refresh, [.lifetime(600)]).isSuccess)
        #expect(h.handler.allocations.count == 1)
    }

    @Test("Draining with neither drain.alternateServer nor an alternate of the client's family: 508")
    func drainingWithoutAlternates() throws {
        let h = clusterHarness(capacity: nil, alternates: [])
        h.handler.draining = DrainConfig()
        let m = try #require(h.client("198.51.100.1:40000").allocate())
        #expect(m.code == 508)
        #expect(m.first(.alternateServer) == nil)
        let v4only = clusterHarness(alternates: ["192.0.2.20:3478"])
        v4only.handler.draining = DrainConfig()
        #expect(v4only.client("[2001:db8:2::1]:40000").allocate().code == 508)
        #expect(v4only.client("198.51.100.1:40000").allocate()?.first(.alternateServer) == .alternateServer(Alt.b4))
        #expect(h.handler.turnCounters.redirectedDrain == 0)
        #expect(v4only.handler.turnCounters.redirectedDrain == 1)
    }

    @Test("Draining: a drain.alternateServer of the other family is not sent (RFC 8489 section 14.15); the cluster's is, else 508")
    func drainAlternateFamily() throws {
        let h = clusterHarness(capacity: 0)
        h.handler.draining = DrainConfig(alternateServer: Alt.drain4)
        let v6 = h.client("[2001:db8:2::1]:40000")
        try expectRedirect(try rawAllocate(v6), to: Alt.b6, v6)
        let v4 = h.client("198.51.100.1:40000")
        try expectRedirect(try rawAllocate(v4), to: Alt.drain4, v4)
        let bare = clusterHarness(capacity: 0, alternates: [])
        bare.handler.draining = DrainConfig(alternateServer: Alt.drain4)
        let refused = try #require(bare.client("[2001:db8:2::1]:40000").allocate())
        #expect(refused.code == 508)
        #expect(refused.first(.alternateServer) == nil)
    }

    @Test("Redirects are shared across workers: two handlers on one SharedTurnState take the alternates in one turn")
    func sharedTurn() throws {
        let shared = SharedTurnState()
        var hs: [TurnHarness] = []
        for _ in 0..<2 {
            let base = TurnHarness(shared: shared)
            var settings = base.turn.settings
            settings.cluster = ClusterConfig(alternateServers: Alt.entries.map { AlternateServer($0)! }, capacity: 1)
            base.handler.reconfigure(turn: TurnContext(realm: base.turn.realm, credentials: base.turn.credentials,
                                                       nonces: base.turn.nonces, policy: base.turn.policy,
                                                       settings: settings, shared: shared))
            hs.append(base)
        }
        #expect(hs[0].client("198.51.100.1:40000").allocate().isSuccess)
        // The second worker sees the first's allocation: at capacity.
        let expected = [Alt.b4, Alt.c4, Alt.b4, Alt.c4]
        for (i, alternate) in expected.enumerated() {
            let c = hs[i % 2].client("198.51.100.\(i + 2):40000")
            try expectRedirect(try rawAllocate(c), to: alternate, c)
        }
        #expect(hs.map(\.handler.turnCounters.redirectedCapacity) == [2, 2])
    }
}
