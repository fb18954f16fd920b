import Foundation
#if canImport(Glibc)
import Glibc
#endif
import STUN
import Testing

extension HeavyInteropTests {
    /// 10,000 allocations on the built binary whose clients then vanish: they expire on time and
    /// give back every relay port, every file descriptor and the memory they took.
    @Suite("Soak: 10,000 vanishing allocations")
    struct SoakTests {
        static let count = 10_000
        static let lifetime = 20

        /// `/proc/PID/status` VmRSS in KiB.
        static func rss(_ pid: Int32) -> Int? {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
            return Int(line.split(separator: " ").dropFirst().first ?? "")
        }

        static func openFDs(_ pid: Int32) -> Int {
            (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
        }

        /// `openFDs` without the admin endpoint's own HTTP connections (port `adminPort`, not listening):
        /// the test's /stats requests come and go, and the server closes each a moment after answering.
        static func serverFDs(_ pid: Int32, adminPort: UInt16) -> Int {
            let fdDir = "/proc/\(pid)/fd"
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: fdDir) else { return -1 }
            var adminConnections = Set<String>()
            for table in ["tcp", "tcp6"] {
                guard let text = try? String(contentsOfFile: "/proc/\(pid)/net/\(table)", encoding: .utf8) else { continue }
                for line in text.split(separator: "\n").dropFirst() {
                    let f = line.split(separator: " ")
                    // sl, local_address, rem_address, st, ..., inode (the tenth field)
                    guard f.count > 9, let port = f[1].split(separator: ":").last.flatMap({ UInt16($0, radix: 16) }),
                          port == adminPort, f[3] != "0A" else { continue }
                    adminConnections.insert("socket:[\(f[9])]")
                }
            }
            let links = fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdDir)/\($0)") }
            return links.filter { !adminConnections.contains($0) }.count
        }


        /// Polls (bounded) until `condition` holds; false if it never did within `seconds`.
        static func poll(within seconds: TimeInterval, every interval: TimeInterval = 0.1, _ condition: () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if condition() { return true }
                Thread.sleep(forTimeInterval: interval)
            }
            return condition()
        }

        /// A UDP socket on 127.0.0.1, non-blocking.
        static func udpSocket() -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            return fd
        }

        static func send(_ fd: Int32, _ bytes: [UInt8], to server: TransportAddress) {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = server.port.bigEndian
            a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            _ = bytes.withUnsafeBytes { b in withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } }
        }

        static func receive(_ fd: Int32) -> Message? {
            var buf = [UInt8](repeating: 0, count: 2048)
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 2048, 0) }
            guard n > 0 else { return nil }
            return try? Message.decode(Array(buf[0..<n]))
        }

        /// Allocates from every socket (signed with a nonce learned once for 127.0.0.1), in waves of
        /// 500 with up to 4 retransmissions; returns how many succeeded.
        static func allocateAll(_ sockets: [Int32], server: TransportAddress, realm: String, nonce: String) -> Int {
            let key = LongTermKey.md5(username: "soak", realm: realm, password: "pw")
            // One transaction per socket: a retransmission carries the same id, so the server answers
            // it with the first response (RFC 8656 section 7.2), not 437.
            var requests: [Int32: [UInt8]] = [:]
            for fd in sockets {
                requests[fd] = Message(type: MessageType(method: .allocate, class: .request), transactionID: .random(),
                                       attributes: [.requestedTransport(protocolNumber: 17), .username("soak"), .realm(realm), .nonce(nonce)])
                    .encode(integrityKey: key, fingerprint: true)
            }
            var done = 0
            var start = 0
            while start < sockets.count {
                var pending = Set(sockets[start..<min(sockets.count, start + 500)])
                for _ in 0..<5 where !pending.isEmpty {
                    for fd in pending { send(fd, requests[fd]!, to: server) }
                    let deadline = Date().addingTimeInterval(2)
                    while !pending.isEmpty && Date() < deadline {
                        var progressed = false
                        for fd in pending {
                            if let m = receive(fd) {
                                pending.remove(fd)
                                progressed = true
                                if m.type.messageClass == .successResponse { done += 1 }
                            }
                        }
                        if !progressed { usleep(2000) }
                    }
                }
                start += 500
            }
            return done
        }

        @Test("Clients of 10,000 allocations vanish: every allocation expires on time; ports, descriptors and RSS come back")
        func vanishingClients() throws {
            // Room for 10,000 client sockets here and 10,000 relay sockets in the server (it inherits the limit).
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            try #require(limit.rlim_max >= UInt(Self.count + 1000), "RLIMIT_NOFILE hard limit \(limit.rlim_max) is too low")
            limit.rlim_cur = limit.rlim_max
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)

            let config = """
            {"realm": "soak", "workers": 2,
             "listeners": [{"transport": "udp", "address": "127.0.0.1", "port": 0}],
             "relay": {"ipv4": "127.0.0.1", "portRange": [10000, 21999]},
             "auth": {"users": {"soak": "pw"}},
             "limits": {"defaultLifetime": \(Self.lifetime), "allocationsPerUser": 20000, "allocationsPerIP": 20000,
                        "allocationRatePerIP": 1000000}}
            """
            let tern = try TernProcess(config: config)
            defer { _ = tern.terminate() }
            #expect(tern.waitForLog("tern listening"), "\(tern.stderr)")
            let server = try #require(tern.boundListeners().first?.address, "\(tern.stderr)")
            let admin = try #require(tern.adminAddress(), "\(tern.stderr)")
            let pid = tern.process.processIdentifier
            // The descriptors of a server at rest, its admin HTTP connections aside (after one admin
            // request, so that whatever the HTTP side opens once is counted).
            _ = adminStat(admin, ["allocations", "active"])
            let fds = { Self.serverFDs(pid, adminPort: admin.port) }
            let idleFDs = fds()

            // Learn the realm and a nonce (one 401), then warm up with 200 allocations that expire,
            // so that the baseline includes what the first allocations initialise once.
            let probe = Self.udpSocket()
            Self.send(probe, Message(type: MessageType(method: .allocate, class: .request),
                                     attributes: [.requestedTransport(protocolNumber: 17)]).encode(), to: server)
            var challenge: Message?
            for _ in 0..<200 where challenge == nil { challenge = Self.receive(probe); if challenge == nil { usleep(10_000) } }
            close(probe)
            guard case .realm(let realm)? = challenge?.first(.realm), case .nonce(let nonce)? = challenge?.first(.nonce) else {
                Issue.record("no 401 challenge: \(String(describing: challenge))")
                return
            }
            func waitForNoAllocations(within seconds: Double) -> Bool {
                Self.poll(within: seconds) { adminStat(admin, ["allocations", "active"]) == 0 }
            }
            let warm = (0..<200).map { _ in Self.udpSocket() }
            #expect(Self.allocateAll(warm, server: server, realm: realm, nonce: nonce) == 200)
            for fd in warm { close(fd) }
            #expect(waitForNoAllocations(within: Double(Self.lifetime) + 10))
            // The expired relay sockets are closed in their sources' cancel handlers, just after.
            #expect(Self.poll(within: 5) { fds() == idleFDs }, "descriptors: \(idleFDs) at rest, \(fds()) after the warm-up expired")
            let baselineRSS = try #require(Self.rss(pid))
            let baselineFDs = fds()

            // 10,000 allocations.
            let sockets = (0..<Self.count).map { _ in Self.udpSocket() }
            let made = Self.allocateAll(sockets, server: server, realm: realm, nonce: nonce)
            let lastCreated = Date()
            #expect(made == Self.count)
            #expect(adminStat(admin, ["allocations", "active"]) == made)
            #expect(fds() >= baselineFDs + made)
            let loadedRSS = Self.rss(pid) ?? 0
            // The clients vanish without a Refresh.
            for fd in sockets { close(fd) }

            // On time: the lifetime, plus one tick of the once-a-second sweep, plus a second of slack.
            #expect(waitForNoAllocations(within: Double(Self.lifetime) + 10))
            let expiredAfter = Date().timeIntervalSince(lastCreated)
            #expect(expiredAfter <= Double(Self.lifetime) + 3, "expired \(expiredAfter) s after the last allocation")
            #expect(adminStat(admin, ["relayPorts", "inUse"]) == 0)
            #expect(adminStat(admin, ["allocations", "ended", "expired"]).map { $0 >= made + 200 } == true)
            // Descriptors close in the cancel handlers just after the expiry; the tick of the mass expiry
            // gives memory back (malloc_trim). Both are polled for, bounded.
            _ = Self.poll(within: 10) {
                fds() == baselineFDs && Double(Self.rss(pid) ?? .max) <= Double(baselineRSS) * 1.10
            }
            let finalFDs = fds()
            let finalRSS = try #require(Self.rss(pid))
            #expect(finalFDs == baselineFDs, "descriptors: \(baselineFDs) before, \(finalFDs) after")
            #expect(Double(finalRSS) <= Double(baselineRSS) * 1.10,
                    "RSS \(baselineRSS) KiB before, \(loadedRSS) KiB with \(made) allocations, \(finalRSS) KiB after")
            print("soak: \(made) allocations expired \(String(format: "%.1f", expiredAfter)) s after the last was made; RSS \(baselineRSS) -> \(loadedRSS) -> \(finalRSS) KiB; fds \(baselineFDs) -> \(finalFDs)")
        }
    }
}
