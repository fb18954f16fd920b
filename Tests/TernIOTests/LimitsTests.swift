#if canImport(Glibc)
import Glibc
#endif
import STUN
import Testing
import TernCore
@testable import TernIO

/// Every `limits` entry driven past its bound over real sockets: the refusal the RFC names (486 /
/// 508) or a silent, counted drop, and the figure in the admin snapshot. The workers' coarse clock
/// ticks once a second for real, so counts that depend on "within one second" allow for one tick
/// falling inside the burst (at most twice the budget) and check the total with the drop counter.
@Suite("Limits (RFC 8656 section 7.2 quotas; rates and bandwidth against abuse)")
struct LimitsTests {
    func limited(_ server: Server, _ key: String) -> UInt64 {
        server.snapshot(perUser: false).limited[key] ?? 0
    }

    @Test("486 past the allocations per client IP, whatever the user; 508 past the server's total")
    func allocationQuotas() throws {
        try withTurnServer(settings: { $0.limits.allocationsPerIP = 2 }) { server, address in
            let a = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            let b = try TurnTestClient(server: address, username: "bob", password: "builder")
            let c = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try a.allocate().type.messageClass == .successResponse)
            #expect(try b.allocate().type.messageClass == .successResponse)
            #expect(try c.allocate().errorCode?.code == 486)
            #expect(limited(server, "ip_quota") == 1)
            // Giving one back frees the IP's quota.
            _ = try a.request(.refresh, [.lifetime(0)])
            #expect(try c.allocate().type.messageClass == .successResponse)
        }
        try withTurnServer(settings: { $0.limits.allocationsTotal = 1 }) { server, address in
            let a = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            let b = try TurnTestClient(server: address, username: "bob", password: "builder")
            #expect(try a.allocate().type.messageClass == .successResponse)
            #expect(try b.allocate().errorCode?.code == 508)
            #expect(limited(server, "total_allocations") == 1)
            #expect(server.stats().allocations == 1)
        }
    }

    @Test("Permissions and channels per allocation: 508 past each, and the ones held keep working")
    func permissionsAndChannels() throws {
        try withTurnServer(settings: { $0.limits.permissionsPerAllocation = 2; $0.limits.channelsPerAllocation = 2 }) { _, address in
            let c = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try c.allocate().type.messageClass == .successResponse)
            func permit(_ ip: String) throws -> Message {
                try c.request(.createPermission, [.xorPeerAddress(TransportAddress(ip: IPAddress(ip)!, port: 9))])
            }
            #expect(try permit("127.0.0.1").type.messageClass == .successResponse)
            #expect(try permit("127.0.0.2").type.messageClass == .successResponse)
            #expect(try permit("127.0.0.3").errorCode?.code == 508)
            // Refreshing a permission it holds is not a new one.
            #expect(try permit("127.0.0.2").type.messageClass == .successResponse)
            // Channels to peers on an IP that already has a permission.
            let peers = try (0..<3).map { _ in try TestPeer() }
            defer { for p in peers { p.close() } }
            for (i, p) in peers.enumerated() {
                let r = try c.request(.channelBind, [.channelNumber(0x4000 + UInt16(i)), .xorPeerAddress(p.address)])
                if i < 2 { #expect(r.type.messageClass == .successResponse) } else { #expect(r.errorCode?.code == 508) }
            }
            c.sendChannelData(0x4001, [7])
            #expect(peers[1].receive()?.data == [7])
        }
    }

    @Test("New allocations per client IP per second: 486 past the rate, and the next second admits again")
    func allocationRate() throws {
        let clock = testClock()
        try withTurnServer(clock: clock, settings: { $0.limits.allocationRatePerIP = 3 }) { server, address in
            var clients: [TurnTestClient] = []
            var ok = 0, refused = 0
            for _ in 0..<8 {
                let c = try TurnTestClient(server: address, username: "alice", password: "wonderland")
                clients.append(c)
                let m = try c.allocate()
                if m.type.messageClass == .successResponse { ok += 1 } else if m.errorCode?.code == 486 { refused += 1 }
            }
            #expect(ok >= 3 && ok <= 6, "admitted \(ok)")
            #expect(ok + refused == 8)
            #expect(limited(server, "allocation_rate") == UInt64(refused))
            // The refused clients retry in a later second and get their allocation.
            clock.advance(by: 2); server.tick()
            let late = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try late.allocate().type.messageClass == .successResponse)
        }
    }

    @Test("Bandwidth per allocation: payload past the bytes-per-second budget is dropped and counted, both directions")
    func bandwidthPerAllocation() throws {
        let clock = testClock()
        try withTurnServer(clock: clock, settings: { $0.limits.bandwidthPerAllocation = 1000 }) { server, address in
            let s = try ChannelSession(server: address)
            defer { s.peer.close() }
            let payload = [UInt8](repeating: 7, count: 200)
            for _ in 0..<20 { s.client.sendChannelData(0x4000, payload) }
            var delivered = 0
            while let got = s.peer.receiveWithin(milliseconds: 300), got.data == payload { delivered += 1 }
            // 1000 B/s is 5 datagrams of 200 B per second: 5, or up to 10 if a tick fell inside the burst.
            #expect(delivered >= 5 && delivered <= 10, "delivered \(delivered)")
            #expect(UInt64(20 - delivered) == limited(server, "bandwidth"))
            // Peer to client draws from the same budget.
            clock.advance(by: 3); server.tick()
            for _ in 0..<20 { s.peer.send(payload, to: s.relayed) }
            var back = 0
            while let r = s.client.receiveRelayedWithin(milliseconds: 300), r.data == payload { back += 1 }
            #expect(back >= 5 && back <= 10, "delivered back \(back)")
            #expect(UInt64(40 - delivered - back) == limited(server, "bandwidth"))
        }
    }

    @Test("Bandwidth per user: two allocations of one user share one budget")
    func bandwidthPerUser() throws {
        try withTurnServer(settings: { $0.limits.bandwidthPerUser = 1000 }) { server, address in
            let one = try ChannelSession(server: address)
            let two = try ChannelSession(server: address)
            defer { one.peer.close(); two.peer.close() }
            let payload = [UInt8](repeating: 9, count: 200)
            for _ in 0..<10 {
                one.client.sendChannelData(0x4000, payload)
                two.client.sendChannelData(0x4000, payload)
            }
            var delivered = 0
            while one.peer.receiveWithin(milliseconds: 300) != nil { delivered += 1 }
            while two.peer.receiveWithin(milliseconds: 300) != nil { delivered += 1 }
            #expect(delivered >= 5 && delivered <= 10, "delivered \(delivered)")
            #expect(UInt64(20 - delivered) == limited(server, "bandwidth"))
            // Another user is not affected.
            let bob = try ChannelSession(server: address, username: "bob", password: "builder")
            defer { bob.peer.close() }
            for _ in 0..<4 { bob.client.sendChannelData(0x4000, payload) }
            var bobs = 0
            while bob.peer.receiveWithin(milliseconds: 300) != nil { bobs += 1 }
            #expect(bobs == 4)
        }
    }

    @Test("Unauthenticated answers per source IP: past the rate requests are dropped silently; authenticated ones still get answers")
    func unauthenticatedRate() throws {
        let clock = testClock()
        try withTurnServer(clock: clock, settings: { $0.limits.unauthenticatedRatePerIP = 5 }) { server, address in
            // A client that already holds a nonce (its challenge came before the flood).
            let s = try ChannelSession(server: address)
            defer { s.peer.close() }
            clock.advance(by: 2); server.tick()
            let flood = try TestSocket.connect(.udp, to: address, timeoutMs: 200)
            defer { flood.close() }
            for _ in 0..<12 {
                flood.send(Message(type: MessageType(method: .allocate, class: .request), transactionID: .random(),
                                   attributes: [.requestedTransport(protocolNumber: 17)]).encode())
            }
            var answers = 0
            while let reply = flood.receive(), (try? Message.decode(reply))?.errorCode?.code == 401 { answers += 1 }
            #expect(answers >= 5 && answers <= 10, "answered \(answers)")
            #expect(limited(server, "unauthenticated_rate") == UInt64(12 - answers))
            // The authenticated client on the same IP is not throttled.
            #expect(try s.client.request(.refresh, []).type.messageClass == .successResponse)
            s.client.sendChannelData(0x4000, [1, 2, 3])
            #expect(s.peer.receive()?.data == [1, 2, 3])
        }
    }

    @Test("TLS handshakes in flight: past the share new connections are closed at accept, and the count comes back when handshakes end")
    func handshakesInFlight() throws {
        let fixture = TLSFixture.shared
        let holder = TLSContextHolder(try fixture.serverContext(), handshakeTimeout: 10)
        var limits = LimitsConfig()
        limits.handshakesInFlight = 2  // server-wide; one source's share is 1 (an eighth, at least 1)
        try withTurnServer(limits: limits, tls: holder) { server, _ in
            let address = try #require(server.bound.first { $0.transport == .tls }?.address)
            var silent: [TestSocket] = []
            for _ in 0..<6 { silent.append(try TestSocket.connect(.tcp, to: address)) }
            #expect(eventually { server.stats().io.handshakesRefused + UInt64(server.stats().connections) == 6 })
            #expect(server.stats().connections <= 2)
            #expect(server.stats().io.handshakesRefused >= 4)
            #expect(limited(server, "handshakes_in_flight") + limited(server, "handshakes_per_ip") == server.stats().io.handshakesRefused)
            for s in silent { s.close() }
            #expect(eventually { server.stats().connections == 0 })
            // Completed handshakes give their slot back: several clients in a row, each finishing.
            for _ in 0..<4 {
                let client = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
                client.tls = try TLSStream(socket: client.socket, trust: fixture.cert)
                #expect(try client.exchange(bindingRequest()).type.messageClass == .successResponse)
            }
        }
    }
}

extension TestPeer {
    /// The next datagram, or nil after `milliseconds` of silence.
    func receiveWithin(milliseconds: Int) -> (from: TransportAddress, data: [UInt8])? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(milliseconds)) == 1 else { return nil }
        return receive()
    }
}

extension TurnTestClient {
    /// The next relayed datagram (UDP client), or nil after `milliseconds` of silence.
    func receiveRelayedWithin(milliseconds: Int) -> (peer: TransportAddress?, channel: UInt16?, data: [UInt8])? {
        var p = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(milliseconds)) == 1 else { return nil }
        return receiveRelayed()
    }
}

@Suite("Allocate flood against the limits, with a legitimate client relaying")
struct AllocateFloodTests {
    @Test("400 source ports flood authenticated Allocates: the limits refuse them while a legitimate client allocates and relays without loss")
    func flood() throws {
        // The config's default rates and per-IP quota (50 new allocations per IP per second, 256 per
        // IP), with a per-user quota of 100 turned on (it is off by default).
        let clock = testClock()
        try withTurnServer(clock: clock, settings: { s in
            let d = LimitsConfig()
            s.limits.allocationRatePerIP = d.allocationRatePerIP
            s.limits.allocationsPerIP = d.allocationsPerIP
            s.limits.allocationsPerUser = 100
            s.limits.unauthenticatedRatePerIP = d.unauthenticatedRatePerIP
        }) { server, address in
            let legit = try ChannelSession(server: address)
            defer { legit.peer.close() }
            // The flood comes from 127.0.0.2 (another host), 400 ports, user bob with valid credentials.
            let flooders = try (0..<400).map { _ in try TestPeer(ip: IPAddress("127.0.0.2")!, timeoutMs: 1) }
            defer { for f in flooders { f.close() } }
            let probe = flooders[0]
            probe.send(Message(type: MessageType(method: .allocate, class: .request), attributes: [.requestedTransport(protocolNumber: 17)]).encode(), to: address)
            let challenge = try Message.decode(try #require(TestPeer.receiveBlocking(probe)))
            guard case .realm(let realm)? = challenge.first(.realm), case .nonce(let nonce)? = challenge.first(.nonce) else {
                Issue.record("no challenge: \(challenge)"); return
            }
            let key = LongTermKey.md5(username: "bob", realm: realm, password: "builder")
            var sent = 0, ok = 0, refused = 0
            var relayedDuring = 0
            // Three waves, each in its own second of the server's clock (moved forward by the test, not
            // waited for): 50 admitted per second from 127.0.0.2, so the second wave reaches bob's quota
            // of 100 and the third is refused whole.
            let waves = 3
            for wave in 1...waves {
                for f in flooders {
                    f.send(Message(type: MessageType(method: .allocate, class: .request),
                                   attributes: [.requestedTransport(protocolNumber: 17), .username("bob"), .realm(realm), .nonce(nonce)])
                        .encode(integrityKey: key, fingerprint: true), to: address)
                    sent += 1
                }
                // The legitimate client relays during every wave.
                for i in 0..<10 { legit.client.sendChannelData(0x4000, [UInt8(wave), UInt8(i)]) }
                for _ in 0..<10 { if legit.peer.receive() != nil { relayedDuring += 1 } }
                // Every authenticated Allocate gets an answer: collect this wave's, polling (bounded) while
                // the server works through them.
                var answered = 0
                let deadline = ContinuousClock.now + .seconds(10)
                while answered < flooders.count && ContinuousClock.now < deadline {
                    var progressed = false
                    for f in flooders {
                        while let r = f.receiveWithin(milliseconds: 0), let m = try? Message.decode(r.data) {
                            answered += 1
                            progressed = true
                            if m.type.messageClass == .successResponse { ok += 1 } else if [486, 508, 437].contains(m.errorCode?.code ?? 0) { refused += 1 }
                        }
                    }
                    if !progressed { usleep(1_000) }
                }
                #expect(answered == flooders.count, "wave \(wave): \(answered) of \(flooders.count) answered")
                clock.advance(by: 1)
                server.tick()
            }
            // A new legitimate allocation from 127.0.0.1 during the flood.
            let newcomer = try ChannelSession(server: address, username: "alice", password: "wonderland")
            defer { newcomer.peer.close() }
            newcomer.client.sendChannelData(0x4000, [42])
            #expect(newcomer.peer.receive()?.data == [42])
            #expect(relayedDuring == waves * 10, "legitimate relay during the flood: \(relayedDuring)/\(waves * 10)")
            // 50 per second per IP over three seconds, but never past the per-user 100.
            #expect(ok == 100, "flood allocations admitted: \(ok) of \(sent)")
            #expect(ok + refused == sent)
            let limited = server.snapshot(perUser: false).limited
            #expect((limited["allocation_rate"] ?? 0) > 0)
            #expect((limited["user_quota"] ?? 0) > 0)
            print("flood: \(sent) Allocates from 400 ports in \(waves) waves: \(ok) admitted, \(refused) refused (limited \(limited)); legitimate relay \(relayedDuring)/\(waves * 10)")
        }
    }
}

extension TestPeer {
    /// Waits up to 2 s for one datagram (the peer's own timeout may be shorter).
    static func receiveBlocking(_ p: TestPeer) -> [UInt8]? {
        for _ in 0..<200 {
            if let r = p.receiveWithin(milliseconds: 10) { return r.data }
        }
        return nil
    }
}
