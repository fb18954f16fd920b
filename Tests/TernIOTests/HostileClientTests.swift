#if canImport(Glibc)
import Glibc
#endif
import STUN
import Testing
import TernCore
@testable import TernIO

/// Hostile clients over real sockets. One server, one legitimate client relaying through a channel
/// the whole time; each class of bad input is thrown at the server from other sockets (and, where
/// it matters, from the legitimate client's own 5-tuple), and after every class the server must
/// still answer a fresh Binding and the legitimate allocation must relay 20 datagrams each way
/// without losing one. The number of inputs per class is printed (`hostile:` lines).
@Suite("Hostile clients (malformed, lying, replayed and misdirected input)")
struct HostileClientTests {
    struct Fixture {
        let server: Server
        let address: TransportAddress
        let legit: ChannelSession
        let key: [UInt8]

        /// A fresh client gets a Binding answer, and the legitimate channel relays 20 + 20 datagrams.
        func stillServes(after label: String, inputs: Int) throws {
            let probe = try TestSocket.connect(.udp, to: address)
            defer { probe.close() }
            probe.send(bindingRequest())
            let reply = try #require(probe.receive(), "no Binding answer after \(label)")
            #expect((try? Message.decode(reply))?.type == MessageType(method: .binding, class: .successResponse))
            for i in 0..<20 { legit.client.sendChannelData(0x4000, [UInt8(i), 0xA5, 0x5A]) }
            var toPeer = 0
            while toPeer < 20, let got = legit.peer.receive(), got.data.count == 3 { toPeer += 1 }
            for i in 0..<20 { legit.peer.send([UInt8(i), 0x5A], to: legit.relayed) }
            var toClient = 0
            while toClient < 20, let got = legit.client.receiveRelayed(), got.data.count == 2 { toClient += 1 }
            #expect(toPeer == 20 && toClient == 20, "after \(label): relayed \(toPeer)/20 and \(toClient)/20")
            print("hostile: \(label): \(inputs) inputs, legitimate relay 20/20 + 20/20")
        }
    }

    func withFixture(_ body: (Fixture) throws -> Void) throws {
        // Only 127.0.0.1 is allowed as a peer (the legitimate client's); every other form is denied by default.
        try withTurnServer(allow: ["127.0.0.1/32"], settings: { $0.limits.unauthenticatedRatePerIP = 1_000_000 }) { server, address in
            let legit = try ChannelSession(server: address)
            defer { legit.peer.close() }
            try body(Fixture(server: server, address: address, legit: legit, key: legit.client.key))
        }
    }

    static func header(_ type: UInt16, length: UInt16, cookie: UInt32 = 0x2112_A442) -> [UInt8] {
        var b: [UInt8] = [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(length >> 8), UInt8(length & 0xFF)]
        b += [UInt8(cookie >> 24), UInt8((cookie >> 16) & 0xFF), UInt8((cookie >> 8) & 0xFF), UInt8(cookie & 0xFF)]
        b += (0..<12).map { _ in UInt8.random(in: 0...255) }
        return b
    }

    static func attribute(_ type: UInt16, _ value: [UInt8], claimedLength: Int? = nil) -> [UInt8] {
        let n = claimedLength ?? value.count
        return [UInt8(type >> 8), UInt8(type & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + value
            + [UInt8](repeating: 0, count: (4 - value.count % 4) % 4)
    }

    /// A whole message from raw attribute bytes, with a correct header length.
    static func message(_ type: UInt16, _ body: [UInt8], cookie: UInt32 = 0x2112_A442) -> [UInt8] {
        header(type, length: UInt16(body.count), cookie: cookie) + body
    }

    func blast(_ datagrams: [[UInt8]], at address: TransportAddress) throws {
        let s = try TestSocket.connect(.udp, to: address, timeoutMs: 50)
        defer { s.close() }
        for d in datagrams { s.send(d) }
        while s.receive() != nil {}  // whatever answers come, read them off
    }

    @Test("Malformed datagrams: truncated headers, lying lengths, attributes past the end, bad cookies, misplaced integrity/fingerprint, oversized")
    func malformed() throws {
        try withFixture { f in
            let valid = bindingRequest(fingerprint: true)
            // 1. Truncated headers: every prefix of a valid request shorter than 20 bytes.
            let truncated = (0..<20).map { Array(valid[0..<$0]) }
            try blast(truncated, at: f.address)
            try f.stillServes(after: "truncated headers", inputs: truncated.count)

            // 2. Length fields that lie: longer or shorter than the bytes, not a multiple of 4.
            var lying: [[UInt8]] = []
            for claimed in [4, 8, 12, 100, 548, 1000, 65_532, 3, 5, 6, 7, 65_535] {
                var b = valid
                b[2] = UInt8(claimed >> 8); b[3] = UInt8(claimed & 0xFF)
                lying.append(b)
            }
            lying.append(Self.header(0x0001, length: 8))  // claims 8 bytes of attributes, has none
            try blast(lying, at: f.address)
            try f.stillServes(after: "lying message lengths", inputs: lying.count)

            // 3. Attribute lengths past the end of the message, for every attribute type the server reads.
            var pastEnd: [[UInt8]] = []
            for type: UInt16 in [0x0006, 0x0008, 0x0009, 0x000C, 0x000D, 0x0012, 0x0013, 0x0014, 0x0015, 0x0016, 0x0017,
                                 0x0018, 0x0019, 0x001C, 0x001D, 0x001E, 0x0020, 0x0022, 0x002A, 0x8022, 0x8028, 0x8000] {
                for claimed in [5, 64, 65_535] {
                    for method: UInt16 in [0x0001, 0x0003, 0x0004, 0x0008, 0x0009, 0x0016] {
                        pastEnd.append(Self.message(method, Self.attribute(type, [1, 2, 3, 4], claimedLength: claimed)))
                    }
                }
            }
            try blast(pastEnd, at: f.address)
            try f.stillServes(after: "attribute lengths past the end", inputs: pastEnd.count)

            // 4. Wrong magic cookie (RFC 5389's is required; RFC 3489 messages are not served).
            let cookies: [UInt32] = [0, 0xFFFF_FFFF, 0x2112_A443, 0x42A4_1221]
            let badCookie = cookies.map { Self.message(0x0001, [], cookie: $0) } + cookies.map { Self.message(0x0003, Self.attribute(0x0019, [17, 0, 0, 0]), cookie: $0) }
            try blast(badCookie, at: f.address)
            try f.stillServes(after: "wrong magic cookie", inputs: badCookie.count)

            // 5. Duplicated and out-of-order MESSAGE-INTEGRITY / FINGERPRINT, on requests for the
            // legitimate client's own allocation (so a mistake would touch live state).
            let mi = Self.attribute(0x0008, [UInt8](repeating: 0xAB, count: 20))
            let mi256 = Self.attribute(0x001C, [UInt8](repeating: 0xCD, count: 32))
            let fp = Self.attribute(0x8028, [0, 0, 0, 0])
            let user = Self.attribute(0x0006, Array("alice".utf8))
            let orders: [[UInt8]] = [mi + mi, fp + mi, fp + fp, mi + fp + mi, mi256 + mi, mi + mi256 + mi256, fp + user, user + mi + user]
            var misplaced: [[UInt8]] = []
            for method: UInt16 in [0x0001, 0x0003, 0x0004, 0x0008, 0x0009] {
                for o in orders { misplaced.append(Self.message(method, user + o)) }
            }
            for m in misplaced { f.legit.client.sendRaw(m) }
            while f.legit.client.socket.receiveWithin(milliseconds: 100) != nil {}
            try f.stillServes(after: "duplicated and misplaced integrity/fingerprint", inputs: misplaced.count)

            // 6. Oversized datagrams: bigger than any STUN message the server reads.
            let oversized = [1500, 4096, 9000, 65_507].map { n -> [UInt8] in
                var b = Self.message(0x0001, Self.attribute(0x8022, [UInt8](repeating: 0x41, count: n - 24)))
                if b.count > n { b = Array(b[0..<n]) }
                return b
            } + [[UInt8](repeating: 0x40, count: 65_507), [UInt8](repeating: 0, count: 65_507)]
            try blast(oversized, at: f.address)
            try f.stillServes(after: "oversized datagrams", inputs: oversized.count)

            // The same garbage over TCP: each connection is closed, the server goes on.
            let tcp = try #require(tcpAddress(f.server))
            let streams: [[UInt8]] = [truncated[7], lying[3], badCookie[0], pastEnd[0], [0xC0, 0, 0, 4, 1, 2, 3, 4],
                                      [0x40, 0x00, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 100), Array("GET / HTTP/1.1\r\n\r\n".utf8)]
            for bytes in streams {
                let s = try TestSocket.connect(.tcp, to: tcp, timeoutMs: 300)
                s.send(bytes)
                _ = s.peerClosed()
                s.close()
            }
            try f.stillServes(after: "malformed TCP streams", inputs: streams.count)
            #expect(f.server.stats().handler.malformed > 0)
        }
    }

    @Test("ChannelData with unbound, reserved or lying channel numbers; data from a 5-tuple that owns no allocation")
    func channelDataAndStrangers() throws {
        try withFixture { f in
            // From the legitimate client's 5-tuple: unbound and reserved channel numbers, bad lengths.
            var bad: [[UInt8]] = []
            for ch: UInt16 in [0x4001, 0x4FFF, 0x5000, 0x7FFF, 0x3FFF, 0x8000, 0xFFFF, 0x0000] {
                bad.append([UInt8(ch >> 8), UInt8(ch & 0xFF), 0, 4, 1, 2, 3, 4])
            }
            bad.append([0x40, 0x00, 0x00, 0x10, 1, 2, 3])      // length says 16, 3 bytes follow
            bad.append([0x40, 0x00, 0xFF, 0xFF])               // length 65535, nothing follows
            bad.append([0x40, 0x00])                           // half a header
            for b in bad { f.legit.client.sendRaw(b) }
            #expect(f.legit.peer.receiveWithin(milliseconds: 200) == nil, "a bad ChannelData reached the peer")
            try f.stillServes(after: "unbound/reserved/lying ChannelData", inputs: bad.count)

            // A stranger (no allocation) sends ChannelData, a Send indication, Refresh, CreatePermission
            // and ChannelBind, unauthenticated and with the legitimate user's valid credentials.
            let stranger = try TurnTestClient(server: f.address, username: "alice", password: "wonderland")
            var inputs = 0
            for _ in 0..<5 {
                stranger.sendChannelData(0x4000, [9, 9, 9]); inputs += 1
                stranger.sendIndication(to: f.legit.peer.address, [8, 8]); inputs += 1
            }
            #expect(f.legit.peer.receiveWithin(milliseconds: 200) == nil, "a stranger's data reached the peer")
            for (method, attrs) in [(Method.refresh, [Attribute]()), (.createPermission, [.xorPeerAddress(f.legit.peer.address)]),
                                    (.channelBind, [.channelNumber(0x4000), .xorPeerAddress(f.legit.peer.address)])] {
                #expect(try stranger.request(method, attrs).errorCode?.code == 437); inputs += 2
            }
            try f.stillServes(after: "requests and data from a 5-tuple with no allocation", inputs: inputs)
        }
    }

    @Test("Bad integrity, replayed and expired nonces, other users' credentials on the allocation")
    func credentials() throws {
        try withFixture { f in
            var inputs = 0
            // Bad integrity: the right user with a wrong password, on the legitimate 5-tuple.
            let impostor = try TurnTestClient(server: f.address, username: "alice", password: "not-the-password")
            for _ in 0..<10 {
                #expect(try impostor.allocate().errorCode?.code == 401); inputs += 2
            }
            // Forged nonces: right length and prefix, wrong MAC; and nonces of another client IP.
            let forger = try TurnTestClient(server: f.address, username: "alice", password: "wonderland")
            _ = try forger.allocate([.lifetime(600)])  // learns realm and a valid nonce, gets an allocation
            for n in ["obMatJos2wAAA" + String(repeating: "A", count: 32), "obMatJos2wAAA", String(repeating: "x", count: 45), ""] {
                forger.nonce = n
                let r = try forger.exchange(forger.encode(.refresh, [], id: .random()))
                #expect(r.errorCode?.code == 438 || r.errorCode?.code == 400, "nonce \(n): \(r)"); inputs += 1
            }
            // Another user's valid credentials on the legitimate client's allocation: 441.
            let bob = f.legit.client
            let (u, p) = (bob.username, bob.password)
            bob.username = "bob"; bob.password = "builder"
            #expect(try bob.request(.refresh, []).errorCode?.code == 441); inputs += 1
            bob.username = u; bob.password = p
            try f.stillServes(after: "bad integrity, forged nonces, wrong credentials", inputs: inputs)
        }
        // Expired nonce (on a server of its own: moving the clock 11 minutes on would also expire the
        // fixture's permission and channel): refused with 438 and a fresh nonce, which then works.
        let clock = testClock()
        try withTurnServer(clock: clock) { server, address in
            let c = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try c.allocate([.lifetime(3600)]).type.messageClass == .successResponse)
            let stale = c.nonce
            clock.advance(by: 700); server.tick()
            #expect(try c.exchange(c.encode(.refresh, [], id: .random())).errorCode?.code == 438)
            #expect(try c.request(.refresh, []).type.messageClass == .successResponse)
            #expect(c.nonce != stale)
            print("hostile: expired nonce: 1 input, answered 438 with a fresh nonce")
        }
    }

    /// Every default-denied address form (RFC 8656 section 21: no relaying to internal networks).
    static let deniedPeers: [String] = [
        "127.0.0.2", "127.255.255.254", "0.0.0.0", "0.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.254", "192.168.1.1",
        "169.254.169.254", "100.64.0.1", "192.0.0.1", "192.0.2.1", "198.18.0.1", "198.51.100.1", "203.0.113.1",
        "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
        "::1", "::", "::ffff:127.0.0.2", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0:10.0.0.1", "::10.0.0.1",
        "64:ff9b::a00:1", "64:ff9b::7f00:2", "2002:a00:1::1", "2002:7f00:2::1", "fc00::1", "fd12:3456::1", "fe80::1",
        "ff02::1", "ff0e::1", "2001:db8::1", "100::1",
    ]

    @Test("Permissions, channels and Send towards every default-denied address form: 403 / dropped, and counted")
    func deniedPeers() throws {
        try withFixture { f in
            // A dual-stack allocation, so that IPv6 peers are judged by the policy rather than by family (443).
            let c = try TurnTestClient(server: f.address, username: "alice", password: "wonderland")
            #expect(relayedAddresses(try c.allocate([.additionalAddressFamily(.ipv6)])).count == 2)
            var inputs = 0
            for text in Self.deniedPeers {
                let ip = try #require(IPAddress(text), "bad test address \(text)")
                let peer = TransportAddress(ip: ip, port: 9)
                #expect(try c.request(.createPermission, [.xorPeerAddress(peer)]).errorCode?.code == 403, "\(text)")
                #expect(try c.request(.channelBind, [.channelNumber(0x4100), .xorPeerAddress(peer)]).errorCode?.code == 403, "\(text)")
                c.sendIndication(to: peer, [1]); inputs += 3
            }
            #expect(f.server.snapshot(perUser: false).dropped["policy"] ?? 0 >= UInt64(2 * Self.deniedPeers.count))
            try f.stillServes(after: "peers at default-denied addresses", inputs: inputs)
        }
    }

    @Test("Spoofed floods of every method with the default limits on: each source gets at most its budgets, the legitimate client is unaffected")
    func unauthenticatedFloodsWithLimitsOn() throws {
        // The default limits (100 unauthenticated answers and 1000 Binding answers per source per
        // second); the server's clock does not move, so every budget is one second's.
        try withTurnServer(allow: ["127.0.0.1/32"]) { server, address in
            let legit = try ChannelSession(server: address)
            defer { legit.peer.close() }
            let f = Fixture(server: server, address: address, legit: legit, key: legit.client.key)
            // Every TURN method, ConnectionBind included, and an unknown one (message type 0x0020: method
            // 0x010, class request); then Bindings.
            let methods: [UInt16] = [0x003, 0x004, 0x008, 0x009, 0x00A, 0x00B, 0x020]
            var inputs = 0
            for source in 2...4 {
                let s = try TestSocket.connect(.udp, to: address, from: IPAddress("127.0.0.\(source)")!, timeoutMs: 50)
                defer { s.close() }
                var answers = 0, bindings = 0
                // In bursts of 40, each answer read before the next burst: nothing is lost to a full
                // socket buffer, so the counts are exact.
                func burst(_ datagrams: [[UInt8]]) {
                    for d in datagrams { s.send(d) }
                    inputs += datagrams.count
                    while let r = s.receiveWithin(milliseconds: 30) {
                        if (try? Message.decode(r))?.type == MessageType(method: .binding, class: .successResponse) { bindings += 1 } else { answers += 1 }
                    }
                }
                for m in methods { for _ in 0..<3 { burst((0..<40).map { _ in Self.message(m, []) }) } }
                for _ in 0..<28 { burst((0..<40).map { _ in bindingRequest() }) }
                #expect(answers == 100, "source 127.0.0.\(source): \(answers) unauthenticated answers of \(methods.count * 120)")
                #expect(bindings == 1000, "source 127.0.0.\(source): \(bindings) Binding answers of 1120")
            }
            let limited = server.snapshot(perUser: false).limited
            #expect(limited["unauthenticated_rate"] == UInt64(3 * (methods.count * 120 - 100)))
            #expect(limited["binding_rate"] == UInt64(3 * (1120 - 1000)))
            try f.stillServes(after: "spoofed floods of every method, limits on", inputs: inputs)
        }
    }
}

extension TestSocket {
    /// The next datagram, or nil after `milliseconds` of silence.
    func receiveWithin(milliseconds: Int) -> [UInt8]? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(milliseconds)) == 1 else { return nil }
        return receive()
    }
}
