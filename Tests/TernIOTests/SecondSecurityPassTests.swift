#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import HummingbirdTesting
import Logging
import STUN
import TernAdmin
import TernCore
import Testing
@testable import TernIO

/// Issue 13, the second security pass, over real sockets: each test fails without its fix.
@Suite("Second security pass over real sockets", .serialized)
struct SecondSecurityPassTests {
    // MARK: helpers

    /// A server with TLS and DTLS listeners (and UDP), two workers, TURN on.
    func withSecureServer(limits: LimitsConfig = LimitsConfig(), listeners: [ClientTransport] = [.tls, .dtls, .udp],
                          handshakeTimeout: Int? = nil, clock: ManualClock = testClock(),
                          _ body: (Server) throws -> Void) throws {
        let fixture = TLSFixture.shared
        var logger = Logger(label: "tern.test")
        logger.logLevel = .warning
        var settings = TurnSettings()
        settings.limits = limits
        let server = Server(listeners: listeners.map { ListenerConfig(transport: $0, address: v4) }, workerCount: 2,
                            handlerConfiguration: HandlerConfiguration(software: "Tern test", turn: testTurnContext(settings: settings)),
                            relay: RelayConfig(ipv4: .loopbackV4, ipv6: nil, portRange: 62000...62999), limits: limits,
                            tls: listeners.contains(.tls) ? TLSContextHolder(try fixture.serverContext()) : nil,
                            dtls: listeners.contains(.dtls)
                                ? try TLSServerContext.dtls(certificateChainPath: fixture.cert, privateKeyPath: fixture.key) : nil,
                            handshakeTimeout: handshakeTimeout, clock: clock, logger: logger)
        try server.start()
        defer { server.stop() }
        try body(server)
    }

    func address(_ server: Server, _ transport: ClientTransport) throws -> TransportAddress {
        try #require(server.bound.first { $0.transport == transport }?.address)
    }

    /// A DTLS client that goes through the cookie exchange (so the server takes a handshake slot for
    /// it) and then goes silent: what an attacker holding slots does. True if the server answered
    /// the cookie-bearing ClientHello with its flight (it admitted the handshake).
    @discardableResult
    func dtlsHalfHandshake(_ socket: TestSocket) -> (client: TLSTestClient, admitted: Bool) {
        let client = TLSTestClient(dtls: true, trust: TLSFixture.shared.cert)
        _ = client.handshake()
        socket.send(client.output())                      // ClientHello
        guard let verify = socket.receive() else { return (client, false) }   // HelloVerifyRequest
        client.feed(verify)
        _ = client.handshake()
        socket.send(client.output())                      // ClientHello with the cookie
        return (client, socket.receive() != nil)          // ServerHello... if admitted
    }

    /// The context a reload would hand the workers: new users, secrets or policy; the same nonce
    /// key and shared state as the running one.
    func reloaded(_ server: Server, users: [String: String] = testUsers, secrets: [String] = testSecrets,
                  allow: [String] = ["127.0.0.0/8", "::1/128"]) -> TurnContext {
        let current = server.workers[0].handler.turn!
        return testTurnContext(users: users, secrets: secrets, allow: allow, settings: current.settings,
                               shared: current.shared, nonces: current.nonces)
    }

    func limited(_ server: Server, _ key: String) -> UInt64 {
        server.snapshot(perUser: false).limited[key] ?? 0
    }

    // MARK: 1 and 2: credentials that end, revocation

    @Test("DELETE /users/{name}/allocations ends every allocation of a user and counts them; a user removed by a reload gets 401 on Refresh")
    func revocation() async throws {
        let (server, address) = try startTurnServer()
        defer { server.stop() }
        let a1 = try ChannelSession(server: address)
        let a2 = try ChannelSession(server: address)
        let bob = try ChannelSession(server: address, username: "bob", password: "builder")
        defer { a1.peer.close(); a2.peer.close(); bob.peer.close() }
        #expect(server.allocationCount == 3)
        let admin = try AdminServer(settings: AdminConfig(port: 0), backend: ServerAdminBackend(server), logger: quietAdminLogger)
        try await admin.application().test(.router) { http in
            let answer = try await adminRequest(http, "/users/alice/allocations", method: .delete)
            #expect(answer.status == 200)
            #expect(jsonInt(answer.json, "deleted") == 2)
            #expect(jsonValue(answer.json, ["user"]) as? String == "alice")
            let again = try await adminRequest(http, "/users/alice/allocations", method: .delete)
            #expect(jsonInt(again.json, "deleted") == 0)
        }
        #expect(server.allocationCount == 1)
        // Alice's relays are gone: her Refresh finds no allocation.
        #expect(try a1.client.request(.refresh, []).errorCode?.code == 437)
        // Bob, removed from the users by a reload: his next request is refused, on the wire.
        #expect(try bob.client.request(.refresh, [.lifetime(600)]).type.messageClass == .successResponse)
        server.updateTurn(reloaded(server, users: ["alice": "wonderland"], secrets: []))
        #expect(try bob.client.request(.refresh, [.lifetime(600)]).errorCode?.code == 401)
        #expect(try bob.client.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(bob.peer.address)]).errorCode?.code == 401)
    }

    // MARK: 3: every unauthenticated answer is throttled

    @Test("Over UDP, ConnectionBind challenges and Binding responses each stop at their per-source budget")
    func throttledOnTheWire() throws {
        try withTurnServer(settings: { $0.limits.unauthenticatedRatePerIP = 5; $0.limits.bindingRatePerIP = 8 }) { server, address in
            let spoofed = try TestPeer(ip: IPAddress("127.0.0.5")!)
            defer { spoofed.close() }
            func answered(_ request: () -> [UInt8], count: Int) -> Int {
                for _ in 0..<count { spoofed.send(request(), to: address) }
                var n = 0
                while spoofed.receiveWithin(milliseconds: 300) != nil { n += 1 }
                return n
            }
            let connectionBind = { Message(type: MessageType(method: .connectionBind, class: .request), transactionID: .random(),
                                           attributes: [.connectionID(7)]).encode() }
            #expect(answered(connectionBind, count: 20) == 5)
            #expect(answered({ bindingRequest() }, count: 20) == 8)
            let snapshot = server.snapshot(perUser: false)
            #expect(snapshot.limited["unauthenticated_rate"] == 15)
            #expect(snapshot.limited["binding_rate"] == 12)
        }
    }

    // MARK: 4 and 5: fair shares of handshakes and DTLS associations

    @Test("Two sources holding TLS and DTLS handshakes open cannot lock out a legitimate TLS client and a legitimate DTLS client")
    func handshakeShares() throws {
        var limits = LimitsConfig()
        limits.handshakesInFlight = 16  // a source's share: 2
        try withSecureServer(limits: limits) { server in
            let tls = try address(server, .tls), dtls = try address(server, .dtls)
            var held: [TestSocket] = []
            var halfDone: [TLSTestClient] = []
            defer { for s in held { s.close() } }
            for attacker in ["127.0.0.2", "127.0.0.3"] {
                let ip = IPAddress(attacker)!
                for _ in 0..<12 { held.append(try TestSocket.connect(.tcp, to: tls, from: ip)) }
                for _ in 0..<4 {
                    let s = try TestSocket.connect(.udp, to: dtls, from: ip, timeoutMs: 300)
                    held.append(s)
                    halfDone.append(dtlsHalfHandshake(s).client)
                }
            }
            // 32 attempts, 4 admitted (2 per source).
            #expect(eventually(within: 5) { server.stats().io.handshakesRefused >= 28 })
            #expect(server.stats().io.handshakesRefusedPerIP >= 28)
            #expect(limited(server, "handshakes_per_ip") >= 28)
            // The legitimate TLS client.
            let client = try TurnTestClient(server: tls, username: "alice", password: "wonderland", transport: .tcp)
            client.tls = try TLSStream(socket: client.socket, trust: TLSFixture.shared.cert)
            #expect(try client.exchange(bindingRequest()).type.messageClass == .successResponse)
            // The legitimate DTLS client.
            let socket = try TestSocket.connect(.udp, to: dtls)
            defer { socket.close() }
            let d = try #require(dtlsHandshake(socket))
            #expect(dtlsBinding(d, socket))
        }
    }

    @Test("DTLS associations count under connectionsPerIP, with TLS connections; another source is not affected")
    func dtlsPerIP() throws {
        var limits = LimitsConfig()
        limits.connectionsPerIP = 2
        try withSecureServer(limits: limits) { server in
            let dtls = try address(server, .dtls), tls = try address(server, .tls)
            let ip = IPAddress("127.0.0.2")!
            var sockets: [TestSocket] = []
            defer { for s in sockets { s.close() } }
            var clients: [TLSTestClient] = []
            for _ in 0..<2 {
                let s = try TestSocket.connect(.udp, to: dtls, from: ip)
                sockets.append(s)
                clients.append(try #require(dtlsHandshake(s)))
            }
            #expect(dtlsBinding(clients[0], sockets[0]))
            // A third association from the same source is not admitted...
            let third = try TestSocket.connect(.udp, to: dtls, from: ip, timeoutMs: 300)
            sockets.append(third)
            #expect(dtlsHalfHandshake(third).admitted == false)
            // ...nor a TLS connection (the same count)...
            let tcp = try TestSocket.connect(.tcp, to: tls, from: ip)
            sockets.append(tcp)
            #expect(tcp.peerClosed())
            #expect(limited(server, "connections_per_ip") >= 2)
            // ...while another source associates.
            let other = try TestSocket.connect(.udp, to: dtls, from: IPAddress("127.0.0.3")!)
            sockets.append(other)
            let o = try #require(dtlsHandshake(other))
            #expect(dtlsBinding(o, other))
        }
    }

    @Test("tls.handshakeTimeout applies to a server with DTLS listeners only")
    func dtlsHandshakeTimeout() throws {
        let clock = testClock()
        try withSecureServer(listeners: [.dtls], handshakeTimeout: 3, clock: clock) { server in
            let dtls = try address(server, .dtls)
            let s = try TestSocket.connect(.udp, to: dtls, timeoutMs: 500)
            defer { s.close() }
            #expect(dtlsHalfHandshake(s).admitted)
            clock.advance(by: 4)
            server.tick()
            #expect(server.stats().io.tlsHandshakeTimeouts == 1)
        }
    }

    // MARK: 7: ConnectionBind only on a new connection

    @Test("ConnectionBind on the control connection, or on a connection that carried another request, gets 400")
    func connectionBindNeedsANewConnection() throws {
        try withTurnServer { server, _ in
            let tcp = try #require(tcpAddress(server))
            let control = try TurnTestClient(server: tcp, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try control.request(.allocate, [.requestedTransport(protocolNumber: 6)]).type.messageClass == .successResponse)
            let onControl = try control.request(.connectionBind, [.connectionID(1234)])
            #expect(onControl.errorCode?.code == 400)
            #expect(onControl.errorCode?.reason == "ConnectionBind needs a new connection")
            // The control connection is still STUN-framed, and its allocation still answers.
            #expect(try control.request(.refresh, []).type.messageClass == .successResponse)

            let used = try TurnTestClient(server: tcp, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try used.exchange(bindingRequest()).type.messageClass == .successResponse)
            #expect(try used.request(.connectionBind, [.connectionID(1234)]).errorCode?.reason == "ConnectionBind needs a new connection")

            // On a new connection (after its 401 challenge) the request is judged on its CONNECTION-ID.
            let fresh = try TurnTestClient(server: tcp, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try fresh.request(.connectionBind, [.connectionID(1234)]).errorCode?.reason == "Unknown CONNECTION-ID")
        }
    }

    // MARK: 9: idle connections are not free

    @Test("Connections without an allocation are capped server-wide; one that allocates leaves the count")
    func connectionsWithoutAllocation() throws {
        var limits = LimitsConfig()
        limits.connectionsWithoutAllocation = 3
        try withTurnServer(limits: limits) { server, _ in
            let tcp = try #require(tcpAddress(server))
            let first = try TurnTestClient(server: tcp, username: "alice", password: "wonderland", transport: .tcp)
            var idle: [TestSocket] = []
            defer { for s in idle { s.close() } }
            for source in ["127.0.0.2", "127.0.0.3"] { idle.append(try TestSocket.connect(.tcp, to: tcp, from: IPAddress(source)!)) }
            #expect(eventually { server.stats().connections == 3 })
            let fourth = try TestSocket.connect(.tcp, to: tcp, from: IPAddress("127.0.0.4")!)
            defer { fourth.close() }
            #expect(fourth.peerClosed())
            #expect(limited(server, "connections_without_allocation") == 1)
            // An allocation takes the first connection out of the count: a newcomer is served.
            #expect(try first.allocate().type.messageClass == .successResponse)
            let newcomer = try TurnTestClient(server: tcp, username: "bob", password: "builder", transport: .tcp)
            #expect(try newcomer.exchange(bindingRequest()).type.messageClass == .successResponse)
        }
    }

    @Test("A byte now and then does not keep a connection open: only complete messages reset the idle timer")
    func tricklingBytes() throws {
        let clock = testClock()
        try withTurnServer(clock: clock) { server, _ in
            let tcp = try #require(tcpAddress(server))
            let slow = try TestSocket.connect(.tcp, to: tcp)
            defer { slow.close() }
            #expect(eventually { server.stats().connections == 1 })
            clock.advance(by: 40)
            server.tick()
            slow.send([0x00])  // the first byte of a STUN header, and no more
            usleep(100_000)
            clock.advance(by: 25)  // 65 s after the connection was made, 25 s after the byte
            server.tick()
            #expect(slow.peerClosed())
            #expect(server.stats().io.tcpClosedIdle == 1)
        }
    }

    // MARK: 11: relay loops

    @Test("The server's own listener and admin ports are refused as peers; its live relays on its own relay address are allowed though loopback is denied")
    func relayLoops() throws {
        try withTurnServer(allow: []) { server, address in
            let adminPort = TransportAddress(ip: .loopbackV4, port: 8478)
            let base = reloaded(server, allow: [])
            server.updateTurn(TurnContext(realm: base.realm, credentials: base.credentials, nonces: base.nonces,
                                          policy: base.policy.with(server.ownEndpoints(admin: adminPort)),
                                          settings: base.settings, shared: base.shared))
            let a = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            let b = try TurnTestClient(server: address, username: "bob", password: "builder")
            let relayA = try #require(relayedAddresses(try a.allocate()).first)
            let relayB = try #require(relayedAddresses(try b.allocate()).first)
            // TURN to TURN between two clients of this server, over its loopback relay address.
            #expect(try a.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(relayB)]).type.messageClass == .successResponse)
            #expect(try b.request(.createPermission, [.xorPeerAddress(relayA)]).type.messageClass == .successResponse)
            a.sendChannelData(0x4000, [9, 8, 7])
            let got = b.receiveRelayed()
            #expect(got?.data == [9, 8, 7])
            #expect(got?.peer == relayA)
            // A port in the relay range that is no live relay (another local service could listen
            // there) stays refused, as does loopback outside the relay range.
            let idle = TransportAddress(ip: .loopbackV4, port: [relayA.port, relayB.port].contains(62999) ? 62998 : 62999)
            #expect(try a.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(idle)]).errorCode?.code == 403)
            #expect(try a.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(TransportAddress(ip: .loopbackV4, port: 5))]).errorCode?.code == 403)
            // Even with loopback allowed outright, its own listeners and admin endpoint are not peers.
            let open = reloaded(server, allow: ["127.0.0.0/8"])
            server.updateTurn(TurnContext(realm: open.realm, credentials: open.credentials, nonces: open.nonces,
                                          policy: open.policy.with(server.ownEndpoints(admin: adminPort)),
                                          settings: open.settings, shared: open.shared))
            #expect(try a.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(TransportAddress(ip: .loopbackV4, port: 5))]).type.messageClass == .successResponse)
            // UDP relaying: the UDP listener is refused...
            #expect(try a.request(.channelBind, [.channelNumber(0x4002), .xorPeerAddress(address)]).errorCode?.code == 403)
            // ...but the same port number on another transport is no loop (a UDP peer may use it).
            let tcp = try #require(tcpAddress(server))
            #expect(try a.request(.channelBind, [.channelNumber(0x4003), .xorPeerAddress(TransportAddress(ip: .loopbackV4, port: tcp.port))])
                .type.messageClass == .successResponse)
            // TCP relaying (RFC 6062 Connect): the TCP listener and the admin endpoint are refused.
            let control = try TurnTestClient(server: tcp, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try control.request(.allocate, [.requestedTransport(protocolNumber: 6)]).type.messageClass == .successResponse)
            for own in [tcp, adminPort] {
                #expect(try control.request(.connect, [.xorPeerAddress(own)]).errorCode?.code == 403, "\(own)")
            }
            // A Send indication to the server's own listener is dropped and counted.
            let before = server.snapshot(perUser: false).dropped["policy"] ?? 0
            a.sendIndication(to: address, bindingRequest())
            #expect(eventually { (server.snapshot(perUser: false).dropped["policy"] ?? 0) == before + 1 })
        }
    }

    // MARK: 12: dual-stack sockets from systemd

    @Test("A [::] socket without IPV6_V6ONLY (socket activation) serves IPv4 clients as IPv4: XOR-MAPPED-ADDRESS, allocations, relaying")
    func dualStackInheritedSockets() throws {
        func dualStack(_ type: Int32) throws -> (fd: Int32, port: UInt16) {
            let fd = socket(AF_INET6, type | Int32(SOCK_CLOEXEC.rawValue), 0)
            var off: Int32 = 0, on: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &off, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, socklen_t(MemoryLayout<Int32>.size))
            let r = TernSocketAddress(TransportAddress(ip: .anyV6, port: 0)).withSockAddr { Glibc.bind(fd, $0, $1) }
            guard r == 0 else { throw SystemError("bind", errno: errno) }
            if type == Int32(SOCK_STREAM.rawValue) { listen(fd, 16) }
            return (fd, (try Posix.localAddress(fd)).transportAddress.port)
        }
        let udp = try dualStack(Int32(SOCK_DGRAM.rawValue)), tcp = try dualStack(Int32(SOCK_STREAM.rawValue))
        var logger = Logger(label: "tern.test")
        logger.logLevel = .warning
        let server = Server(listeners: [ListenerConfig(transport: .udp, address: TransportAddress(ip: .anyV6, port: udp.port)),
                                        ListenerConfig(transport: .tcp, address: TransportAddress(ip: .anyV6, port: tcp.port))],
                            workerCount: 1, handlerConfiguration: HandlerConfiguration(software: "Tern test", turn: testTurnContext()),
                            relay: RelayConfig(ipv4: .loopbackV4, ipv6: .loopbackV6, portRange: 62000...62999), logger: logger)
        server.inherited = [udp.fd, tcp.fd]
        try server.start()
        defer { server.stop() }
        let udpAddress = TransportAddress(ip: .loopbackV4, port: udp.port)
        let client = try TurnTestClient(server: udpAddress, username: "alice", password: "wonderland")
        let binding = try client.exchange(bindingRequest())
        #expect(binding.xorMappedAddress == client.socket.localAddress)
        #expect(binding.xorMappedAddress?.ip.family == .ipv4)
        let relayed = try #require(relayedAddresses(try client.allocate()).first)
        let peer = try TestPeer()
        defer { peer.close() }
        #expect(try client.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(peer.address)]).type.messageClass == .successResponse)
        client.sendChannelData(0x4000, [1, 2])
        #expect(peer.receive()?.data == [1, 2])
        peer.send([3, 4], to: relayed)
        #expect(client.receiveRelayed()?.data == [3, 4])
        #expect(server.allocationInfos(user: nil, client: nil).first?.client == "\(client.socket.localAddress)")
        let stream = try TestSocket.connect(.tcp, to: TransportAddress(ip: .loopbackV4, port: tcp.port))
        defer { stream.close() }
        stream.send(bindingRequest())
        let reply = try Message.decode(try #require(stream.receiveSTUNFromStream()))
        #expect(reply.xorMappedAddress == stream.localAddress)
    }
}

/// RFC 5780 over real sockets: the four addresses on 127.0.0.1 and 127.0.0.2.
@Suite("RFC 5780 NAT behaviour discovery over loopback", .serialized)
struct NatBehaviorSocketTests {
    @Test("CHANGE-REQUEST answers come from the other address and port; RESPONSE-PORT answers go to another port")
    func changeRequestOnTheWire() throws {
        // Two free UDP ports on both loopback addresses: bind and release (another test may race, rarely).
        let p1 = try TestPeer(ip: .loopbackV4), p2 = try TestPeer(ip: .loopbackV4)
        let port1 = p1.address.port, port2 = p2.address.port
        p1.close(); p2.close()
        let nat = NatBehaviorAddresses(primary: TransportAddress(ip: .loopbackV4, port: port1),
                                       other: TransportAddress(ip: IPAddress("127.0.0.2")!, port: port2))
        var logger = Logger(label: "tern.test")
        logger.logLevel = .warning
        let server = Server(listeners: nat.all.map { ListenerConfig(transport: .udp, address: $0.ip, port: $0.port) }, workerCount: 2,
                            handlerConfiguration: HandlerConfiguration(natBehavior: nat), logger: logger)
        try server.start()
        defer { server.stop() }
        let client = try TestPeer(ip: .loopbackV4)
        defer { client.close() }
        func ask(_ attributes: [Attribute]) -> (from: TransportAddress, message: Message)? {
            let request = Message(type: MessageType(method: .binding, class: .request), transactionID: .random(), attributes: attributes)
            client.send(request.encode(), to: nat.primary)
            guard let got = client.receive(), let m = try? Message.decode(got.data), m.transactionID == request.transactionID else { return nil }
            return (got.from, m)
        }
        let plain = try #require(ask([]))
        #expect(plain.from == nat.primary)
        #expect(plain.message.first(.otherAddress) == .otherAddress(nat.other))
        let both = try #require(ask([.changeRequest(changeIP: true, changePort: true)]))
        #expect(both.from == nat.other)
        #expect(both.message.first(.responseOrigin) == .responseOrigin(nat.other))
        let portOnly = try #require(ask([.changeRequest(changeIP: false, changePort: true)]))
        #expect(portOnly.from == TransportAddress(ip: .loopbackV4, port: port2))
        // RESPONSE-PORT: the answer goes to another socket of the client's host.
        let other = try TestPeer(ip: .loopbackV4)
        defer { other.close() }
        let request = Message(type: MessageType(method: .binding, class: .request), transactionID: .random(),
                              attributes: [.unknown(type: AttributeType(rawValue: 0x0027), value: [UInt8(other.address.port >> 8), UInt8(other.address.port & 0xFF), 0, 0])])
        client.send(request.encode(), to: nat.primary)
        let redirected = try #require(other.receive())
        #expect((try? Message.decode(redirected.data))?.transactionID == request.transactionID)
        #expect(redirected.from == nat.primary)
    }
}
