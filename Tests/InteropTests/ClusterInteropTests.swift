import Foundation
#if canImport(Glibc)
import Glibc
#endif
import STUN
import TernIO
import Testing

/// `cluster`: three real Tern nodes. A holds `cluster.capacity` allocations; an authenticated
/// Allocate to it then gets 300 Try Alternate with ALTERNATE-SERVER (RFC 8489 section 10), the
/// alternates of the client's family in turn, signed with MESSAGE-INTEGRITY; a client that follows
/// it allocates on the alternate and relays there.
///
/// - coturn's `turnutils_uclient` follows a 300 on its first ("probe") allocation of each client:
///   it checks the 300's MESSAGE-INTEGRITY, then makes its real allocations on the ALTERNATE-SERVER.
/// - Headless Chromium follows a 300 over UDP too, never to a loopback address (WebRTC's
///   `TurnPort::SetAlternateServer` blocks them, crbug 649118: its test runs the nodes and the
///   browser in a network namespace, on 10.99.0.0/24 addresses of a veth interface), and with the
///   first node's NONCE, which the alternate refuses (see `browserFollowsRedirectWithStaleNonce`).
extension HeavyInteropTests {
    @Suite("cluster: a full node redirects Allocate (300 Try Alternate) to the others", .serialized)
    struct ClusterInteropTests {
        static let user = "alice", password = "wonderland", realm = "tern.test"

        // MARK: A scripted client of our own (the STUN module): it holds an allocation, or sees the 300.

        /// One request/response on the connected UDP socket `fd`: up to 3 sends, 1 s apart; the
        /// response to this transaction, its raw bytes too (for the integrity check).
        static func transact(_ fd: Int32, _ request: Message, key: [UInt8]? = nil) -> (Message, [UInt8])? {
            var tv = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let bytes = request.encode(integrityKey: key, fingerprint: true)
            var buffer = [UInt8](repeating: 0, count: 2048)
            for _ in 0..<3 {
                guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == bytes.count else { return nil }
                for _ in 0..<10 {  // stray datagrams (none expected) are skipped, a few at most
                    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    guard n > 0 else { break }
                    let raw = Array(buffer[0..<n])
                    if let m = try? Message.decode(raw), m.transactionID == request.transactionID { return (m, raw) }
                }
            }
            return nil
        }

        /// What an Allocate with `user`'s long-term credentials got on the connected UDP socket `fd`
        /// (after the 401 that tells realm and nonce): the response, and whether its
        /// MESSAGE-INTEGRITY checks with the key. The socket keeps a successful allocation alive.
        static func allocate(_ fd: Int32) -> (response: Message?, integrityOK: Bool, log: String) {
            let allocate = MessageType(method: .allocate, class: .request)
            guard let (challenge, _) = transact(fd, Message(type: allocate, attributes: [.requestedTransport(protocolNumber: 17)])),
                  challenge.errorCode?.code == 401, let realm = challenge.realm, let nonce = challenge.nonce else {
                return (nil, false, "no 401 with REALM and NONCE")
            }
            let key = LongTermKey.md5(username: user, realm: realm, password: password)
            let request = Message(type: allocate, attributes: [.requestedTransport(protocolNumber: 17), .lifetime(600),
                                                               .username(user), .realm(realm), .nonce(nonce)])
            guard let (response, raw) = transact(fd, request, key: key) else { return (nil, false, "no answer to the signed Allocate") }
            let ok = (try? raw.withUnsafeBytes { b throws(STUNDecodeError) in try MessageReader(b).checkMessageIntegrity(key: key) }) ?? false
            return (response, ok, "\(response)")
        }

        /// A UDP socket (in network namespace `netns` when given) connected to `server`.
        static func udpSocket(to server: TransportAddress, netns: String? = nil) throws -> Int32 {
            let fd = try netns.map { try NetworkNamespace.socket(in: $0, AF_INET, Int32(SOCK_DGRAM.rawValue)) }
                ?? socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { throw BrowserHarnessError("socket: errno \(errno)") }
            let connected = TernSocketAddress(server).withSockAddr { connect(fd, $0, $1) }
            guard connected == 0 else { close(fd); throw BrowserHarnessError("connect \(server): errno \(errno)") }
            return fd
        }

        /// `/stats` of an admin endpoint on this namespace's loopback, as JSON.
        static func stats(_ admin: TransportAddress) -> [String: Any] {
            guard let body = httpRequest(admin, "/stats")?.body else { return [:] }
            return (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
        }

        /// allocations.created, allocations.active and allocations.redirected.capacity from `/stats`.
        static func figures(_ stats: [String: Any]) -> (created: Int, active: Int, redirected: Int) {
            let a = stats["allocations"] as? [String: Any] ?? [:]
            let redirected = (a["redirected"] as? [String: Any])?["capacity"] as? NSNumber
            return ((a["created"] as? NSNumber)?.intValue ?? -1, (a["active"] as? NSNumber)?.intValue ?? -1, redirected?.intValue ?? -1)
        }

        // MARK: Loopback: three nodes on 127.0.0.1, .2, .3; coturn's uclient follows the redirects.

        /// A node on `ip`: UDP on an ephemeral port, relays on `ip`, shared users; admin on 127.0.0.1:0.
        /// No drain wait at SIGTERM (A still holds the filler's allocation then).
        static func nodeConfig(_ ip: String, cluster: String? = nil) -> String {
            """
            {"realm": "\(realm)", "workers": 2, "drain": {"timeoutSeconds": 0},
             "listeners": [{"transport": "udp", "address": "\(ip)", "port": 0}],
             "relay": {"ipv4": "\(ip)", "portRange": [62000, 62999]},
             "auth": {"users": {"\(user)": "\(password)"}},
             "peers": {"allow": ["127.0.0.0/8"]}\(cluster.map { #", "cluster": \#($0)"# } ?? "")}
            """
        }

        /// Starts `tern serve` with `config`; its UDP listener and its admin endpoint.
        static func start(_ config: String) throws -> (tern: TernProcess, udp: TransportAddress, admin: TransportAddress) {
            let tern = try TernProcess(config: config)
            guard tern.waitForLog("tern listening"), tern.waitForLog("admin listening"),
                  let udp = tern.boundListeners().first(where: { $0.transport == "udp" })?.address, let admin = tern.adminAddress() else {
                _ = tern.terminate()
                throw BrowserHarnessError("tern did not start: \(tern.stderr)")
            }
            return (tern, udp, admin)
        }

        @Test("coturn's uclient sent to a full A (capacity 1) follows 300 Try Alternate: first run on B, second on C, zero loss; a third redirect names B again",
              .enabled(if: FileManager.default.isExecutableFile(atPath: TurnClientInteropTests.uclient)
                          && FileManager.default.isExecutableFile(atPath: TurnClientInteropTests.peerTool), "needs coturn's utilities"),
              .timeLimit(.minutes(1)))
        func uclientFollowsRedirects() throws {
            let b = try Self.start(Self.nodeConfig("127.0.0.2"))
            defer { _ = b.tern.terminate() }
            let c = try Self.start(Self.nodeConfig("127.0.0.3"))
            defer { _ = c.tern.terminate() }
            let a = try Self.start(Self.nodeConfig("127.0.0.1", cluster: #"{"alternateServers": ["\#(b.udp)", "\#(c.udp)"], "capacity": 1}"#))
            defer { _ = a.tern.terminate() }
            #expect(httpRequest(a.admin, "/readyz")?.status == 200, "\(a.tern.stderr)")

            // The first client fills A and keeps its allocation (its socket stays open until the end).
            let filler = try Self.udpSocket(to: a.udp)
            defer { close(filler) }
            let first = Self.allocate(filler)
            try #require(first.response?.type.messageClass == .successResponse, "\(first.log)\n\(a.tern.stderr)")
            #expect(first.response?.xorRelayedAddress?.ip == IPAddress("127.0.0.1"), "\(first.log)")
            #expect(httpRequest(a.admin, "/readyz")?.status == 503, "A is at capacity: /readyz 503")

            let peerPort = TurnClientInteropTests.freeUDPPort()
            let peer = try TurnClientInteropTests.startPeer(port: peerPort)
            defer { peer.stop() }
            try #require(peer.ready, "turnutils_peer does not echo on port \(peerPort)")
            // One client (-m 1), no RTCP allocation (-c): its probe allocation on A gets the 300, its real one goes where it says.
            func uclient() throws -> (status: Int32, output: String) {
                try runTool(TurnClientInteropTests.uclient, ["-u", Self.user, "-w", Self.password, "-e", "127.0.0.1", "-r", "\(peerPort)",
                                                             "-m", "1", "-c", "-n", "20", "-l", "120", "-z", "5", "-p", "\(a.udp.port)", "127.0.0.1"],
                            timeout: 30)
            }
            for (run, node) in [(1, b), (2, c)] {
                let t0 = Date()
                let r = try uclient()
                let s = TurnClientInteropTests.summary(r.output)
                let (fa, fb, fc) = (Self.figures(Self.stats(a.admin)), Self.figures(Self.stats(b.admin)), Self.figures(Self.stats(c.admin)))
                print("cluster: uclient run \(run) (\(String(format: "%.1f", Date().timeIntervalSince(t0))) s): sent \(s?.sent ?? -1), lost \(s?.lost ?? -1); A created \(fa.created) redirected \(fa.redirected), "
                      + "B created \(fb.created), C created \(fc.created)")
                #expect(r.status == 0, "run \(run): \(r.output.suffix(2000))")
                #expect(r.output.contains("error 300"), "run \(run): uclient logs the 300 it followed: \(r.output.suffix(2000))")
                #expect((s?.sent ?? 0) >= 20 && s?.lost == 0, "run \(run): \(r.output.suffix(2000))")
                #expect(fa.redirected == run && fa.created == 1, "run \(run): A: \(Self.stats(a.admin))")
                #expect(fb.created == 1 && fc.created == run - 1, "run \(run) lands on \(node.udp): B \(fb), C \(fc)")
            }

            // The third redirect: round robin is back at B; the 300 is signed (MESSAGE-INTEGRITY with the long-term key).
            let third = try Self.udpSocket(to: a.udp)
            defer { close(third) }
            let redirected = Self.allocate(third)
            #expect(redirected.response?.errorCode?.code == 300, "\(redirected.log)")
            #expect(redirected.response?.first(.alternateServer) == .alternateServer(b.udp), "\(redirected.log)")
            #expect(redirected.response?.first(.alternateDomain) == nil, "no ALTERNATE-DOMAIN over UDP: \(redirected.log)")
            #expect(redirected.integrityOK, "the 300 carries a valid MESSAGE-INTEGRITY: \(redirected.log)")
            let fa = Self.figures(Self.stats(a.admin))
            #expect(fa.redirected == 3 && fa.created == 1 && fa.active == 1, "A: \(fa)")
        }

        // MARK: Headless Chromium in a network namespace: A and B on 10.99.0.1 and .2 (no loopback redirects).

        static let tag = String(getpid() % 100_000)
        /// "terncs…": distinct from the other suites' namespaces (terncl, ternnat, ternpub, ternprobe, ternd…).
        static let ns = "terncs\(tag)"
        static let (aIP, bIP, browserIP) = ("10.99.0.1", "10.99.0.2", "10.99.0.10")
        static let etcNetnsExisted = FileManager.default.fileExists(atPath: "/etc/netns")

        /// One namespace, one interface carrying the browser's, A's and B's addresses, and a
        /// default route through it (WebRTC picks its local address by one). Deleting the namespace
        /// removes the interface.
        static func buildNamespace() throws {
            teardownNamespace()
            guard try runTool("/usr/sbin/ip", ["netns", "add", ns]).status == 0 else { throw BrowserHarnessError("ip netns add \(ns) failed") }
            // Chromium looks a name up before its first navigation: a resolver that fails at once.
            try FileManager.default.createDirectory(atPath: "/etc/netns/\(ns)", withIntermediateDirectories: true)
            try "nameserver 127.0.0.1\n".write(toFile: "/etc/netns/\(ns)/resolv.conf", atomically: true, encoding: .utf8)
            // A veth pair with both ends in the namespace (no `dummy` module on every kernel): the addresses on one end.
            let (link, peer) = ("cv0\(tag)", "cv1\(tag)")
            let steps: [[String]] = [
                ["-n", ns, "link", "set", "lo", "up"], ["-n", ns, "link", "add", link, "type", "veth", "peer", "name", peer],
                ["-n", ns, "addr", "add", "\(browserIP)/24", "dev", link], ["-n", ns, "addr", "add", "\(aIP)/24", "dev", link],
                ["-n", ns, "addr", "add", "\(bIP)/24", "dev", link], ["-n", ns, "link", "set", peer, "up"],
                ["-n", ns, "link", "set", link, "up"], ["-n", ns, "route", "add", "default", "dev", link],
            ]
            for step in steps {
                let r = try runTool("/usr/sbin/ip", step)
                guard r.status == 0 else {
                    teardownNamespace()
                    throw BrowserHarnessError("ip \(step.joined(separator: " ")): \(r.output)")
                }
            }
        }

        static func teardownNamespace() {
            _ = try? runTool("/usr/sbin/ip", ["netns", "del", ns])
            try? FileManager.default.removeItem(atPath: "/etc/netns/\(ns)")
            if !etcNetnsExisted { rmdir("/etc/netns") }  // ours, and only if now empty
        }

        /// A node in the namespace: UDP 3478 on `ip`, relays there, admin on the namespace's 127.0.0.1:`adminPort`.
        static func namespacedConfig(_ ip: String, adminPort: Int, cluster: String? = nil) -> String {
            """
            {"realm": "\(realm)", "workers": 1,
             "listeners": [{"transport": "udp", "address": "\(ip)", "port": 3478}],
             "relay": {"ipv4": "\(ip)", "portRange": [50000, 50999]},
             "auth": {"users": {"\(user)": "\(password)"}}, "peers": {"allow": ["10.99.0.0/24"]},
             "admin": {"enabled": true, "address": "127.0.0.1", "port": \(adminPort)}\(cluster.map { #", "cluster": \#($0)"# } ?? "")}
            """
        }

        /// GET on an admin endpoint in the namespace, through curl there: status (0: no answer) and body.
        static func namespacedAdmin(_ port: Int, _ path: String) -> (status: Int, body: String) {
            guard let r = try? runTool("/usr/sbin/ip", ["netns", "exec", ns, "/usr/bin/curl", "-s", "-m", "2", "-w", "\n%{http_code}",
                                                       "http://127.0.0.1:\(port)\(path)"], timeout: 5) else { return (0, "") }
            let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
        }

        /// allocations.created / active / redirected.capacity and authFailures.stale_nonce of a node in the namespace.
        static func namespacedFigures(_ port: Int) -> (created: Int, active: Int, redirected: Int, staleNonce: Int) {
            let body = namespacedAdmin(port, "/stats").body
            let stats = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
            let f = figures(stats)
            let stale = ((stats["authFailures"] as? [String: Any])?["stale_nonce"] as? NSNumber)?.intValue ?? -1
            return (f.created, f.active, f.redirected, stale)
        }

        /// What Chromium does with the 300 (UDP, non-loopback alternate): it follows it and sends its
        /// Allocate to B with the realm and NONCE it got from A (WebRTC's `TurnPort::TryAlternateServer`
        /// keeps both; the 300 carries no NONCE of its own), and WebRTC retries an Allocate only after
        /// 401, 300 and 437: a 438 from B would end it. The nodes share a nonce key
        /// (`cluster.nonceSecret`), so B accepts A's nonce and the browser ends up relaying through B.
        /// (Before the shared key, B answered 438 Stale Nonce and Chromium gathered no relay candidate.)
        @Test("Headless Chromium given only A (full) follows the 300 to B over UDP and relays through B: the nodes accept each other's nonces",
              .enabled(if: NamespaceSupport.available && BrowserHarness.isAvailable
                          && FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"),
                       "needs root, ip, network namespaces, curl, chromium and chromedriver"),
              .timeLimit(.minutes(1)))
        func browserFollowsRedirect() throws {
            try Self.buildNamespace()
            defer { Self.teardownNamespace() }
            let nonce = #""nonceSecret": "fleet-nonce-secret-for-the-test""#
            let b = try DiscoveryNamespaceTests.NamespacedTern(
                in: Self.ns, config: Self.namespacedConfig(Self.bIP, adminPort: 8472, cluster: "{\(nonce)}"))
            defer { b.stop() }
            let a = try DiscoveryNamespaceTests.NamespacedTern(
                in: Self.ns, config: Self.namespacedConfig(Self.aIP, adminPort: 8471,
                                                           cluster: #"{"alternateServers": ["\#(Self.bIP):3478"], "capacity": 1, \#(nonce)}"#))
            defer { a.stop() }
            let up = DiscoveryNamespaceTests.waitUntil(seconds: 10) {
                Self.namespacedAdmin(8471, "/readyz").status == 200 && Self.namespacedAdmin(8472, "/readyz").status == 200
            }
            try #require(up, "A:\n\(a.output)\nB:\n\(b.output)")

            // A scripted client in the namespace fills A.
            let filler = try Self.udpSocket(to: TransportAddress(ip: IPAddress(Self.aIP)!, port: 3478), netns: Self.ns)
            defer { close(filler) }
            let held = Self.allocate(filler)
            try #require(held.response?.type.messageClass == .successResponse, "\(held.log)\n\(a.output)")
            #expect(Self.namespacedAdmin(8471, "/readyz").status == 503, "A is at capacity")

            let server: [String: Any] = ["urls": ["turn:\(Self.aIP):3478?transport=udp"], "username": Self.user, "credential": Self.password]
            let ice = String(decoding: try JSONSerialization.data(withJSONObject: [server]), as: UTF8.self)
            let r = try BrowserHarness.runRelayTest(iceServers: ice, timeout: 30, netns: Self.ns)
            let (fa, fb) = (Self.namespacedFigures(8471), Self.namespacedFigures(8472))
            let relayCandidates = r.log.filter { $0.contains(" candidate ") && $0.contains("typ relay") }
            print("cluster browser: phase \(r.phase), candidates \(r.candidateCounts), errors \(r.iceCandidateErrors); "
                  + "A created \(fa.created) redirected \(fa.redirected); B created \(fb.created) stale_nonce \(fb.staleNonce); relay \(relayCandidates)")
            #expect(r.error == nil, "\(r)\nA:\n\(a.output)\nB:\n\(b.output)")
            #expect(r.dataChannelOpenMs != nil && r.messagesOK && r.framesDecoded >= 30, "\(r)")
            #expect(r.localCandidateTypes == ["relay", "relay"] && r.remoteCandidateTypes == ["relay", "relay"], "\(r)")
            // Both peer connections' relay candidates are on B, never on A.
            #expect(relayCandidates.contains { $0.contains("pc1 candidate") } && relayCandidates.contains { $0.contains("pc2 candidate") },
                    "\(relayCandidates)")
            #expect(relayCandidates.allSatisfy { $0.contains(" \(Self.bIP) ") && !$0.contains(" \(Self.aIP) ") }, "\(relayCandidates)")
            // A redirected both and allocated nothing more; B allocated both, with no stale nonce.
            #expect(fa.redirected >= 2 && fa.created == 1 && fa.active == 1, "A: \(fa)")
            #expect(fb.created >= 2 && fb.staleNonce == 0, "B: \(fb)")
            #expect(r.iceCandidateErrors.isEmpty, "\(r)")
        }

        /// Why the browser test needs a namespace: on loopback, Chromium refuses the redirect itself.
        @Test("Headless Chromium on loopback refuses a 300 naming a loopback alternate (crbug 649118): icecandidateerror 300, B never asked",
              .enabled(if: BrowserHarness.isAvailable, "needs chromium and chromedriver"), .timeLimit(.minutes(1)))
        func browserRefusesLoopbackAlternate() throws {
            let b = try Self.start(Self.nodeConfig("127.0.0.2"))
            defer { _ = b.tern.terminate() }
            let a = try Self.start(Self.nodeConfig("127.0.0.1", cluster: #"{"alternateServers": ["\#(b.udp)"], "capacity": 1}"#))
            defer { _ = a.tern.terminate() }
            let filler = try Self.udpSocket(to: a.udp)
            defer { close(filler) }
            let held = Self.allocate(filler)
            try #require(held.response?.type.messageClass == .successResponse, "\(held.log)\n\(a.tern.stderr)")
            let server: [String: Any] = ["urls": ["turn:\(a.udp)?transport=udp"], "username": Self.user, "credential": Self.password]
            let ice = String(decoding: try JSONSerialization.data(withJSONObject: [server]), as: UTF8.self)
            let r = try BrowserHarness.runRelayTest(iceServers: ice, timeout: 20, expectConnection: false, video: false)
            let (fa, fb) = (Self.figures(Self.stats(a.admin)), Self.stats(b.admin))
            print("cluster browser on loopback: errors \(r.iceCandidateErrors); A redirected \(fa.redirected)")
            #expect(r.error == nil, "\(r)")
            #expect(!r.iceCandidateErrors.isEmpty && r.iceCandidateErrors.allSatisfy { $0.code == 300 && $0.url.hasPrefix("turn:\(a.udp)") }, "\(r)")
            #expect(r.candidateCounts == [0, 0], "\(r)")
            #expect(fa.redirected >= 2 && fa.created == 1, "A: \(fa)")
            #expect(fb["requests"] is [String: Any] && (fb["requests"] as? [String: Any])?["allocate"] == nil, "B got no Allocate: \(fb)")
        }
    }
}
