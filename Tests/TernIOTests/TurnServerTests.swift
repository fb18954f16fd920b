#if canImport(Glibc)
import Glibc
#endif
import Logging
import STUN
import TernCore
import Testing
@testable import TernIO

/// A TURN server on loopback with static users and a shared secret. Relay ports sit above Linux's
/// ephemeral range (32768-60999), so client sockets of parallel tests never take them.
func withTurnServer<R>(allow: [String] = ["127.0.0.0/8", "::1/128"], deny: [String] = [],
                       portRange: ClosedRange<UInt16> = 62000...62999,
                       relayIPv6: IPAddress? = .loopbackV6,
                       limits: StreamLimits = StreamLimits(),
                       tls: TLSContextHolder? = nil,
                       clock: ManualClock = testClock(),
                       settings: (inout TurnSettings) -> Void = { _ in },
                       _ body: (Server, TransportAddress) throws -> R) throws -> R {
    let (server, address) = try startTurnServer(allow: allow, deny: deny, portRange: portRange, relayIPv6: relayIPv6,
                                                limits: limits, tls: tls, clock: clock, settings: settings)
    defer { server.stop() }
    return try body(server, address)
}

/// A test server's clock: the real time at the start, then moved only by the test (`advance(by:)`,
/// then `Server.tick()`), so the workers' own once-a-second tick never moves time under a test.
func testClock() -> ManualClock { ManualClock(startingAt: SystemClock()) }

/// The users and secret of `startTurnServer`.
let testUsers = ["alice": "wonderland", "bob": "builder"]
let testSecrets = ["s3cret"]

func testTurnContext(users: [String: String] = testUsers, secrets: [String] = testSecrets,
                     allow: [String] = ["127.0.0.0/8", "::1/128"], deny: [String] = [],
                     settings: TurnSettings = TurnSettings(), shared: SharedTurnState = SharedTurnState(),
                     nonces: NonceIssuer = NonceIssuer(key: NonceIssuer.randomKey())) -> TurnContext {
    let realm = "tern.test"
    return TurnContext(
        realm: realm,
        credentials: CredentialStore(realm: realm, users: users, secrets: secrets),
        nonces: nonces,
        policy: PeerPolicy(allow: allow.compactMap(CIDR.init), deny: deny.compactMap(CIDR.init)),
        settings: settings, shared: shared)
}

/// Starts the server `withTurnServer` describes; the caller stops it. Returns its UDP IPv4 address.
func startTurnServer(allow: [String] = ["127.0.0.0/8", "::1/128"], deny: [String] = [],
                     portRange: ClosedRange<UInt16> = 62000...62999,
                     relayIPv6: IPAddress? = .loopbackV6,
                     limits: StreamLimits = StreamLimits(),
                     tls: TLSContextHolder? = nil,
                     io: IOConfig = IOConfig(),
                     clock: ManualClock = testClock(),
                     settings: (inout TurnSettings) -> Void = { _ in }) throws -> (Server, TransportAddress) {
    var turnSettings = TurnSettings()
    settings(&turnSettings)
    let context = testTurnContext(allow: allow, deny: deny, settings: turnSettings)
    var logger = Logger(label: "tern.test")
    logger.logLevel = .warning
    let server = Server(listeners: [ListenerSpec(transport: .udp, address: v4), ListenerSpec(transport: .udp, address: v6),
                                    ListenerSpec(transport: .tcp, address: v4)]
                            + (tls == nil ? [] : [ListenerSpec(transport: .tls, address: v4)]),
                        workerCount: 2, handlerConfiguration: HandlerConfiguration(software: "Tern test", turn: context),
                        relay: RelayAddresses(ipv4: .loopbackV4, ipv6: relayIPv6, portRange: portRange),
                        limits: limits, tls: tls, io: io, clock: clock, logger: logger)
    let bound = try server.start()
    return (server, bound[0].address)
}

/// The TCP listener of a `withTurnServer` server (same port numbering as its UDP one is not implied).
func tcpAddress(_ server: Server) -> TransportAddress? {
    server.bound.first { $0.transport == .tcp }?.address
}

func relayedAddresses(_ m: Message) -> [TransportAddress] {
    m.attributes.compactMap { if case .xorRelayedAddress(let a) = $0 { return a } else { return nil } }
}

@Suite("TURN over UDP (RFC 8656) with the project's own client")
struct TurnServerTests {
    @Test("An unauthenticated Allocate is challenged with REALM, NONCE and PASSWORD-ALGORITHMS")
    func challenge() throws {
        try withTurnServer { server, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            let m = try client.request(.allocate, [.requestedTransport(protocolNumber: 17)], authenticated: false)
            #expect(m.errorCode?.code == 401)
            #expect(m.first(.realm) == .realm("tern.test"))
            guard case .nonce(let nonce)? = m.first(.nonce) else { Issue.record("no nonce"); return }
            #expect(nonce.hasPrefix("obMatJos2"))
            #expect(m.first(.passwordAlgorithms) == .passwordAlgorithms([PasswordAlgorithmEntry(.md5), PasswordAlgorithmEntry(.sha256)]))
            #expect(m.first(.messageIntegrity) == nil)
        }
    }

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
            var dropped: UInt64 = 0
            for _ in 0..<200 where dropped < 2 {
                dropped = server.stats().droppedNoPermission
                if dropped < 2 { usleep(10_000) }
            }
            #expect(dropped == 2)
            #expect(server.stats().allocations == 1)
            let live = server.withHandlers { $0.allocations.all.map(\.counters) }.flatMap { $0 }
            #expect(live.first?.packetsToPeer == 2)
            #expect(live.first?.packetsToClient == 2)
            #expect(live.first?.droppedNoPermission == 1)
        }
    }

    @Test("A retransmitted Allocate gets the same answer; another transaction gets 437")
    func retransmission() throws {
        try withTurnServer { _, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            // Learn the realm and a nonce (the Refresh itself gets 437: no allocation yet).
            #expect(try client.request(.refresh, []).errorCode?.code == 437)
            let id = TransactionID.random()
            let bytes = client.encode(.allocate, [.requestedTransport(protocolNumber: 17)], id: id)
            let first = try client.exchange(bytes)
            let again = try client.exchange(bytes)
            #expect(first.type.messageClass == .successResponse)
            #expect(first == again)
            let other = try client.allocate()
            #expect(other.errorCode?.code == 437)
        }
    }

    @Test("Refresh keeps, then LIFETIME 0 deletes; afterwards 437")
    func refreshAndDelete() throws {
        try withTurnServer { server, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            _ = try client.allocate([.lifetime(1200)])
            let kept = try client.request(.refresh, [.lifetime(99_999)])
            #expect(kept.first(.lifetime) == .lifetime(3600))
            let small = try client.request(.refresh, [.lifetime(10)])
            #expect(small.first(.lifetime) == .lifetime(600))
            let wrongFamily = try client.request(.refresh, [.requestedAddressFamily(.ipv6)])
            #expect(wrongFamily.errorCode?.code == 443)
            let deleted = try client.request(.refresh, [.lifetime(0)])
            #expect(deleted.first(.lifetime) == .lifetime(0))
            #expect(server.stats().allocations == 0)
            // The relay socket's descriptor is closed in its source's cancel handler, asynchronously.
            #expect(eventually { server.stats().relaySockets == 0 })
            #expect(try client.request(.refresh, [.lifetime(0)]).errorCode?.code == 437)
        }
    }

    @Test("Error codes: 400, 420, 442, 440, 443, 403, 401 and 438")
    func errors() throws {
        try withTurnServer(allow: ["127.0.0.0/8"], relayIPv6: nil) { _, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try client.request(.allocate, []).errorCode?.code == 400)
            #expect(try client.request(.allocate, [.requestedTransport(protocolNumber: 132)]).errorCode?.code == 442)
            #expect(try client.allocate([.unknown(type: AttributeType(rawValue: 0x0041), value: [1])]).errorCode?.code == 420)
            // No IPv6 relay address configured and the client came over IPv4.
            #expect(try client.allocate([.requestedAddressFamily(.ipv6)]).errorCode?.code == 440)
            #expect(try client.allocate([.requestedAddressFamily(.ipv4), .additionalAddressFamily(.ipv6)]).errorCode?.code == 400)
            let ok = try client.allocate()
            #expect(ok.type.messageClass == .successResponse, "\(ok)")
            #expect(try client.request(.createPermission, []).errorCode?.code == 400)
            #expect(try client.request(.createPermission, [.xorPeerAddress(TransportAddress("[::1]:5000")!)]).errorCode?.code == 443)
            #expect(try client.request(.createPermission, [.xorPeerAddress(TransportAddress("10.0.0.1:5000")!)]).errorCode?.code == 403)
            #expect(try client.request(.channelBind, [.channelNumber(0x3FFF), .xorPeerAddress(TransportAddress("127.0.0.1:5000")!)]).errorCode?.code == 400)
            #expect(try client.request(.channelBind, [.channelNumber(0x8000), .xorPeerAddress(TransportAddress("127.0.0.1:5000")!)]).errorCode?.code == 400)
            // RFC 5766's wider range (0x4000-0x7FFF) is still accepted, for clients such as coturn's.
            #expect(try client.request(.channelBind, [.channelNumber(0x7FFF), .xorPeerAddress(TransportAddress("127.0.0.1:5009")!)]).type.messageClass == .successResponse)
            #expect(try client.request(.channelBind, [.channelNumber(0x4001)]).errorCode?.code == 400)
            _ = try client.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(TransportAddress("127.0.0.1:5000")!)])
            #expect(try client.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(TransportAddress("127.0.0.1:5001")!)]).errorCode?.code == 400)
            #expect(try client.request(.channelBind, [.channelNumber(0x4002), .xorPeerAddress(TransportAddress("127.0.0.1:5000")!)]).errorCode?.code == 400)
            // A forged nonce: 438 with a fresh one.
            let saved = client.nonce
            client.nonce = "obMatJos2AAAAnot-a-real-nonce"
            let stale = try client.exchange(client.encode(.refresh, [], id: .random()))
            #expect(stale.errorCode?.code == 438)
            #expect(stale.first(.nonce) != nil)
            client.nonce = saved
            // A wrong password: 401 (a new 5-tuple, so no allocation is involved).
            let wrong = try TurnTestClient(server: address, username: "alice", password: "not it")
            #expect(try wrong.allocate().errorCode?.code == 401)
            let nobody = try TurnTestClient(server: address, username: "mallory", password: "x")
            #expect(try nobody.allocate().errorCode?.code == 401)
        }
    }

    @Test("Every default-denied peer form gets 403 with an empty peers config")
    func defaultDeniedPeers() throws {
        try withTurnServer(allow: []) { _, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try client.allocate([.additionalAddressFamily(.ipv6)]).type.messageClass == .successResponse)
            let denied = ["127.0.0.1", "0.0.0.0", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254",
                          "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "240.0.0.1",
                          "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
                          "::127.0.0.1", "2002:7f00:1::", "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "2001:db8::1"]
            for text in denied {
                let ip = try #require(IPAddress(text))
                let r = try client.request(.createPermission, [.xorPeerAddress(TransportAddress(ip: ip, port: 9))])
                #expect(r.errorCode?.code == 403, "\(text) was not refused: \(r)")
                let c = try client.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(TransportAddress(ip: ip, port: 9))])
                #expect(c.errorCode?.code == 403, "\(text) channel was not refused")
            }
            let fine = try client.request(.createPermission, [.xorPeerAddress(TransportAddress("8.8.8.8:53")!)])
            #expect(fine.type.messageClass == .successResponse)
        }
    }

    @Test("441 when another user's credentials touch an allocation")
    func wrongCredentials() throws {
        try withTurnServer { _, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try client.allocate().type.messageClass == .successResponse)
            client.username = "bob"
            client.password = "builder"
            #expect(try client.request(.refresh, []).errorCode?.code == 441)
        }
    }

    @Test("Shared-secret (TURN REST API) credentials, SHA-256 and USERHASH")
    func credentialsVariants() throws {
        try withTurnServer { _, address in
            let now = UInt64(time(nil))
            let user = "\(now + 3600):carol"
            let rest = try TurnTestClient(server: address, username: user,
                                          password: CredentialStore.restPassword(secret: "s3cret", username: user))
            #expect(try rest.allocate().type.messageClass == .successResponse)
            let expiredUser = "\(now - 10):carol"
            let expired = try TurnTestClient(server: address, username: expiredUser,
                                             password: CredentialStore.restPassword(secret: "s3cret", username: expiredUser))
            #expect(try expired.allocate().errorCode?.code == 401)
            let sha = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            sha.useSHA256 = true
            let m = try sha.allocate()
            #expect(m.type.messageClass == .successResponse, "\(m)")
            #expect(m.first(.messageIntegritySHA256) != nil)
            #expect(m.first(.messageIntegrity) == nil)
            let hashed = try TurnTestClient(server: address, username: "bob", password: "builder")
            hashed.useUserhash = true
            #expect(try hashed.allocate().type.messageClass == .successResponse)
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

    @Test("EVEN-PORT with R reserves the next port for a RESERVATION-TOKEN")
    func evenPort() throws {
        try withTurnServer { _, address in
            let first = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            let m = try first.allocate([.evenPort(reserve: true)])
            let relay = try #require(relayedAddresses(m).first)
            #expect(relay.port % 2 == 0)
            guard case .reservationToken(let token)? = m.first(.reservationToken) else { Issue.record("no token"); return }
            let second = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            let r = try second.allocate([.reservationToken(token)])
            #expect(relayedAddresses(r).first?.port == relay.port + 1, "\(r)")
            let third = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try third.allocate([.reservationToken(token)]).errorCode?.code == 508)
            #expect(try third.allocate([.reservationToken(token), .evenPort(reserve: false)]).errorCode?.code == 400)
        }
    }

    @Test("486 past the per-user quota, 508 when the port range is exhausted")
    func quotas() throws {
        try withTurnServer(portRange: 63000...63001, settings: { $0.limits.allocationsPerUser = 3 }) { server, address in
            var clients: [TurnTestClient] = []
            for _ in 0..<2 {
                let c = try TurnTestClient(server: address, username: "alice", password: "wonderland")
                #expect(try c.allocate().type.messageClass == .successResponse)
                clients.append(c)
            }
            let noPort = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try noPort.allocate().errorCode?.code == 508)
            let quota = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            _ = try clients[0].request(.refresh, [.lifetime(0)])
            #expect(try quota.allocate().type.messageClass == .successResponse)
            let over = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            _ = try clients[1].request(.refresh, [])
            // Two live allocations and a quota of 3, but both ports are taken: 508, quota unchanged.
            #expect(try over.allocate().errorCode?.code == 508)
            #expect(server.stats().allocations == 2)
        }
        try withTurnServer(settings: { $0.limits.allocationsPerUser = 1 }) { _, address in
            let a = try TurnTestClient(server: address, username: "bob", password: "builder")
            #expect(try a.allocate().type.messageClass == .successResponse)
            let b = try TurnTestClient(server: address, username: "bob", password: "builder")
            #expect(try b.allocate().errorCode?.code == 486)
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
            var open = 1
            for _ in 0..<200 where open > 0 {
                open = server.stats().relaySockets
                if open > 0 { usleep(10_000) }
            }
            #expect(open == 0)
        }
    }
}

@Suite("TURN per-user counters")
struct TurnUserCounterTests {
    @Test("Per-user traffic survives the allocation; REST usernames count under their user id")
    func perUser() throws {
        #expect(RequestHandler.userKey("1764100000:carol") == "carol")
        #expect(RequestHandler.userKey("alice") == "alice")
        #expect(RequestHandler.userKey("x1:y") == "x1:y")
        try withTurnServer { server, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            _ = try client.allocate()
            let peer = try TestPeer()
            defer { peer.close() }
            _ = try client.request(.createPermission, [.xorPeerAddress(peer.address)])
            client.sendIndication(to: peer.address, [1, 2, 3, 4])
            #expect(peer.receive()?.data == [1, 2, 3, 4])
            _ = try client.request(.refresh, [.lifetime(0)])
            let totals = server.withHandlers { $0.counters(forUser: "alice") }
            #expect(totals.map(\.allocations).reduce(0, +) == 0)
            #expect(totals.map(\.traffic.bytesToPeer).reduce(0, +) == 4)
            #expect(totals.map(\.traffic.packetsToPeer).reduce(0, +) == 1)
        }
    }
}

@Suite("TURN over TCP client connections (RFC 8656 section 3.1), UDP relays")
struct TurnOverTCPTests {
    @Test("Allocate over TCP; Send/Data and padded ChannelData relay both ways")
    func relayOverTCP() throws {
        try withTurnServer { server, _ in
            let address = try #require(tcpAddress(server))
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            let peer = try TestPeer()
            defer { peer.close() }
            let allocated = try client.allocate()
            let relay = try #require(relayedAddresses(allocated).first, "\(allocated)")
            #expect(try client.request(.createPermission, [.xorPeerAddress(peer.address)]).type.messageClass == .successResponse)
            client.sendIndication(to: peer.address, [1, 2, 3])
            let got = try #require(peer.receive())
            #expect(got.data == [1, 2, 3])
            #expect(got.from == relay)  // the relay is UDP whatever the client transport
            peer.send([4, 5, 6, 7, 8], to: relay)
            let back = try #require(client.receiveRelayed())
            #expect(back.peer == peer.address)
            #expect(back.data == [4, 5, 6, 7, 8])
            #expect(try client.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(peer.address)]).type.messageClass == .successResponse)
            client.sendChannelData(0x4001, [9, 9, 9])  // 3 bytes + 1 byte padding on the stream
            #expect(peer.receive()?.data == [9, 9, 9])
            peer.send([1], to: relay)
            let framed = try #require(client.receiveRelayed())
            #expect(framed.channel == 0x4001)
            #expect(framed.data == [1])
            // The next frame is read correctly after the padded one.
            peer.send([2, 2], to: relay)
            #expect(client.receiveRelayed()?.data == [2, 2])
        }
    }

    @Test("Closing the connection ends its allocation and closes the relay socket")
    func closeEndsAllocation() throws {
        try withTurnServer { server, _ in
            let address = try #require(tcpAddress(server))
            var client: TurnTestClient? = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try client?.allocate().type.messageClass == .successResponse)
            #expect(server.stats().allocations == 1)
            client = nil  // closes the socket
            var live = 1
            var sockets = 1
            for _ in 0..<300 where live > 0 || sockets > 0 {
                let s = server.stats()
                live = s.allocations
                sockets = s.relaySockets
                if live > 0 || sockets > 0 { usleep(10_000) }
            }
            #expect(live == 0)
            #expect(sockets == 0)
            #expect(server.stats().allocationsDeleted == 1)
        }
    }

    @Test("A client that stops reading loses relayed datagrams, not memory; others keep flowing")
    func slowReader() throws {
        var limits = StreamLimits()
        limits.maxQueuedBytes = 64 * 1024
        // The bandwidth limits off, so that the stream's own queue is what drops.
        try withTurnServer(limits: limits, settings: { $0.limits.bandwidthPerAllocation = 0; $0.limits.bandwidthPerUser = 0 }) { server, _ in
            let address = try #require(tcpAddress(server))
            let slow = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            // A small receive buffer so the kernel's own buffering does not hide the queue.
            var small: Int32 = 4096
            setsockopt(slow.socket.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            let relay = try #require(relayedAddresses(try slow.allocate()).first)
            let flooder = try TestPeer()
            defer { flooder.close() }
            #expect(try slow.request(.createPermission, [.xorPeerAddress(flooder.address)]).type.messageClass == .successResponse)
            // A well-behaved UDP client and its peer beside it.
            let good = try TurnTestClient(server: try #require(server.bound.first { $0.transport == .udp }?.address),
                                          username: "bob", password: "builder")
            let goodRelay = try #require(relayedAddresses(try good.allocate()).first)
            let goodPeer = try TestPeer()
            defer { goodPeer.close() }
            #expect(try good.request(.createPermission, [.xorPeerAddress(goodPeer.address)]).type.messageClass == .successResponse)
            // 20 MB towards the client that never reads: far more than any buffer on the way.
            let chunk = [UInt8](repeating: 0x5A, count: 1000)
            for i in 0..<20_000 {
                flooder.send(chunk, to: relay)
                if i % 2000 == 0 { usleep(1000) }
            }
            var dropped: UInt64 = 0
            for _ in 0..<300 where dropped == 0 {
                dropped = server.stats().io.streamRelayDropped
                if dropped == 0 { usleep(10_000) }
            }
            #expect(dropped > 0)
            // The slow client's connection is still there, and its allocation too.
            #expect(server.stats().allocations == 2)
            #expect(server.stats().io.tcpClosedSlowReader == 0)
            // Meanwhile the other client's traffic flows.
            for n in 0..<20 {
                goodPeer.send([UInt8(n)], to: goodRelay)
                #expect(good.receiveRelayed()?.data == [UInt8(n)])
            }
            // And the slow client, once it reads, still gets complete frames.
            let frame = try #require(slow.receiveRelayed())
            #expect(frame.data == chunk)
        }
    }
}

@Suite("Stream connection limits")
struct StreamLimitTests {
    @Test("Connections past the per-IP cap are closed at accept; a freed slot is reusable")
    func perIPCap() throws {
        var limits = StreamLimits()
        limits.connectionsPerIP = 2
        try withServer([ListenerSpec(transport: .tcp, address: v4)], limits: limits) { server, bound in
            let a = try TestSocket.connect(.tcp, to: bound[0].address)
            let b = try TestSocket.connect(.tcp, to: bound[0].address)
            for s in [a, b] {
                s.send(bindingRequest())
                #expect(s.receiveSTUNFromStream() != nil)
            }
            let c = try TestSocket.connect(.tcp, to: bound[0].address)
            #expect(c.peerClosed())
            c.close()
            #expect(server.stats().io.tcpRefusedPerIP == 1)
            a.close()
            var open = 2
            for _ in 0..<300 where open > 1 {
                open = server.stats().connections
                if open > 1 { usleep(10_000) }
            }
            let d = try TestSocket.connect(.tcp, to: bound[0].address)
            defer { d.close(); b.close() }
            d.send(bindingRequest())
            #expect(d.receiveSTUNFromStream() != nil)
        }
    }

    @Test("Idle connections without an allocation are closed; one with an allocation stays")
    func idle() throws {
        let clock = testClock()
        try withTurnServer(clock: clock) { server, _ in
            let address = try #require(tcpAddress(server))
            let idle = try TestSocket.connect(.tcp, to: address)
            defer { idle.close() }
            let busy = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try busy.allocate().type.messageClass == .successResponse)
            clock.advance(by: 30); server.tick()
            #expect(server.stats().io.tcpClosedIdle == 0)
            clock.advance(by: 61); server.tick()
            #expect(idle.peerClosed())
            #expect(server.stats().io.tcpClosedIdle == 1)
            #expect(server.stats().allocations == 1)
            #expect(try busy.request(.refresh, []).type.messageClass == .successResponse)
        }
    }
}

@Suite("TURN details: external addresses, DONT-FRAGMENT, nonce expiry")
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

    @Test("A nonce past its lifetime gets 438 Stale Nonce, then the fresh one works")
    func nonceExpiry() throws {
        let clock = testClock()
        try withTurnServer(clock: clock) { server, address in
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            // A long allocation, so only the nonce (600 s) runs out.
            #expect(try client.allocate([.lifetime(3600)]).type.messageClass == .successResponse)
            let before = client.nonce
            clock.advance(by: 601); server.tick()
            let stale = try client.exchange(client.encode(.refresh, [], id: .random()))
            #expect(stale.errorCode?.code == 438)
            guard case .nonce(let fresh)? = stale.first(.nonce) else { Issue.record("no nonce"); return }
            #expect(fresh != before)
            client.nonce = fresh
            #expect(try client.exchange(client.encode(.refresh, [], id: .random())).type.messageClass == .successResponse)
        }
    }
}
