import Foundation
import STUN
import Testing

/// `relay.discoverExternal` behind a real 1:1 NAT, in network namespaces (documentation ranges only):
///
///     tern ns 10.88.0.2 ── nat ns 10.88.0.1 | 198.51.100.1 + 198.51.100.5 ── bridge in the internet ns ── client ns
///     (tern serve, admin               nftables: 198.51.100.5 <-> 10.88.0.2      198.51.100.9: the STUN     198.51.100.20:
///      on its 127.0.0.1:8478)          (dnat in, snat out: ports kept)           server (another tern)     tern probe, Chromium
///
/// Tern asks the STUN server on the internet side which address its relay ports have out there;
/// the NAT keeps ports, so 198.51.100.5 becomes the advertised relay address, and a client and a
/// browser on the internet side relay through it. With `snat ... fully-random` the NAT changes
/// ports: not 1:1, nothing advertised, `/readyz` stays 503. Needs root, `ip`, `nft` and curl;
/// the browser test also Chromium and chromedriver (run inside the client namespace).
@Suite("relay.discoverExternal behind a 1:1 NAT, in network namespaces", .serialized,
       .enabled(if: NamespaceSupport.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"),
                "needs root, ip, nft, curl and the right to create network namespaces"))
struct DiscoveryNamespaceTests {
    static let tag = String(getpid() % 100_000)
    /// "ternd…": distinct from NatNamespaceTests' terncl/ternnat/ternpub and NamespaceSupport's ternprobe.
    static let ternNS = "terndt\(tag)", natNS = "terndn\(tag)", internetNS = "terndi\(tag)", clientNS = "terndc\(tag)"
    static let namespaces = [ternNS, natNS, internetNS, clientNS]
    static let publicIP = "198.51.100.5", stunServer = "198.51.100.9:3478", clientIP = "198.51.100.20"
    static let secret = "s3cret"

    struct TestFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    static func ip(_ args: [String]) throws -> (status: Int32, output: String) { try runTool("/usr/sbin/ip", args) }

    /// Builds the four namespaces. Every link is created inside a namespace (never in this one), so
    /// deleting the namespaces removes everything. `oneToOne` false: the NAT's snat picks a random
    /// port (`fully-random`), so the mapping is not 1:1.
    static func build(oneToOne: Bool) throws {
        teardown()
        for ns in namespaces { _ = try ip(["netns", "add", ns]) }
        // No name server is reachable from the namespaces: a lookup there (Chromium makes one
        // before its first navigation) would wait out resolv.conf's timeouts, ~15 s. `ip netns exec`
        // bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf: one that fails at once.
        try FileManager.default.createDirectory(atPath: "/etc/netns/\(clientNS)", withIntermediateDirectories: true)
        try "nameserver 127.0.0.1\n".write(toFile: "/etc/netns/\(clientNS)/resolv.conf", atomically: true, encoding: .utf8)
        // Link names: tern-nat, nat-internet, internet-client, and the bridge.
        let (t0, n0, n1, i0, i1, c0, br) = ("dt0\(tag)", "dn0\(tag)", "dn1\(tag)", "di0\(tag)", "di1\(tag)", "dc0\(tag)", "dbr\(tag)")
        let rules = """
        table ip ternd {
          chain pre { type nat hook prerouting priority -100; ip daddr \(publicIP) dnat to 10.88.0.2; }
          chain post { type nat hook postrouting priority 100; ip saddr 10.88.0.2 snat to \(publicIP)\(oneToOne ? "" : " fully-random"); }
        }
        """
        let nftFile = FileManager.default.temporaryDirectory.appendingPathComponent("ternd-\(UUID().uuidString).nft")
        try rules.write(to: nftFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: nftFile) }
        let steps: [[String]] = [
            ["-n", ternNS, "link", "add", t0, "type", "veth", "peer", "name", n0, "netns", natNS],
            ["-n", natNS, "link", "add", n1, "type", "veth", "peer", "name", i0, "netns", internetNS],
            ["-n", clientNS, "link", "add", c0, "type", "veth", "peer", "name", i1, "netns", internetNS],
            // Tern's side: a private address behind the NAT.
            ["-n", ternNS, "addr", "add", "10.88.0.2/24", "dev", t0], ["-n", ternNS, "link", "set", t0, "up"],
            ["-n", ternNS, "link", "set", "lo", "up"], ["-n", ternNS, "route", "add", "default", "via", "10.88.0.1"],
            // The NAT: its own outside address and the public 1:1 address on the outside link.
            ["-n", natNS, "addr", "add", "10.88.0.1/24", "dev", n0], ["-n", natNS, "link", "set", n0, "up"],
            ["-n", natNS, "addr", "add", "198.51.100.1/24", "dev", n1], ["-n", natNS, "addr", "add", "\(publicIP)/24", "dev", n1],
            ["-n", natNS, "link", "set", n1, "up"], ["-n", natNS, "link", "set", "lo", "up"],
            ["netns", "exec", natNS, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            // Hairpinning (relay to relay) goes out the link it came in on: no redirects for it.
            ["netns", "exec", natNS, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0"],
            ["netns", "exec", natNS, "sysctl", "-qw", "net.ipv4.conf.\(n0).send_redirects=0"],
            ["netns", "exec", natNS, "nft", "-f", nftFile.path],
            // The internet: one bridged segment, the STUN server on it; the client beside it.
            ["-n", internetNS, "link", "add", br, "type", "bridge"],
            ["-n", internetNS, "link", "set", i0, "master", br], ["-n", internetNS, "link", "set", i1, "master", br],
            ["-n", internetNS, "addr", "add", "198.51.100.9/24", "dev", br],
            ["-n", internetNS, "link", "set", br, "up"], ["-n", internetNS, "link", "set", i0, "up"],
            ["-n", internetNS, "link", "set", i1, "up"], ["-n", internetNS, "link", "set", "lo", "up"],
            ["-n", clientNS, "addr", "add", "\(clientIP)/24", "dev", c0], ["-n", clientNS, "link", "set", c0, "up"],
            ["-n", clientNS, "link", "set", "lo", "up"],
            // A default route, as a host on the internet has (WebRTC picks its local address by one).
            ["-n", clientNS, "route", "add", "default", "via", "198.51.100.1"],
        ]
        for step in steps {
            let r = try ip(step)
            guard r.status == 0 else {
                teardown()
                throw TestFailure("ip \(step.joined(separator: " ")): \(r.output)")
            }
        }
    }

    static func teardown() {
        for ns in namespaces { _ = try? ip(["netns", "del", ns]) }
        try? FileManager.default.removeItem(atPath: "/etc/netns/\(clientNS)")
        if !etcNetnsExisted { rmdir("/etc/netns") }  // ours, and only if now empty
    }

    /// Whether /etc/netns was there before this suite first touched it (then it stays).
    static let etcNetnsExisted = FileManager.default.fileExists(atPath: "/etc/netns")

    /// `tern serve` run in a namespace (`ip netns exec` execs it: the pid is tern's), its log in a file.
    final class NamespacedTern {
        let process = Process()
        let config: URL
        let log: URL

        init(in ns: String, config text: String) throws {
            config = FileManager.default.temporaryDirectory.appendingPathComponent("ternd-\(UUID().uuidString).json")
            log = FileManager.default.temporaryDirectory.appendingPathComponent("ternd-\(UUID().uuidString).log")
            try text.write(to: config, atomically: true, encoding: .utf8)
            FileManager.default.createFile(atPath: log.path, contents: nil)
            let out = try FileHandle(forWritingTo: log)
            defer { try? out.close() }
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            process.arguments = ["netns", "exec", ns, TernProcess.executableURL.path, "serve", "--config", config.path]
            process.standardOutput = out
            process.standardError = out
            try process.run()
        }

        var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        /// SIGKILL: children of the test runner inherit a signal mask that blocks SIGTERM.
        func stop() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            try? FileManager.default.removeItem(at: config)
            try? FileManager.default.removeItem(at: log)
        }
    }

    /// Tern behind the NAT: TURN on UDP and TCP 3478, discovery through the internet-side STUN
    /// server, admin on the tern namespace's 127.0.0.1:8478. No `peers.allow`: the relayed
    /// addresses (198.51.100.5, a documentation address the default policy refuses) are permitted
    /// as this server's own relay addresses, which the discovered address must be.
    static let ternConfig = """
    {"realm": "tern.test",
     "listeners": [{"transport": "udp", "address": "0.0.0.0", "port": 3478}, {"transport": "tcp", "address": "0.0.0.0", "port": 3478}],
     "relay": {"discoverExternal": "\(stunServer)", "portRange": [50000, 50999]},
     "auth": {"users": {"alice": "wonderland"}, "secrets": ["\(secret)"]},
     "admin": {"enabled": true, "address": "127.0.0.1", "port": 8478}}
    """

    /// The STUN server on the internet side: another tern, Binding only (no auth), no admin.
    static func startStunServer() throws -> NamespacedTern {
        try NamespacedTern(in: internetNS, config: """
        {"listeners": [{"transport": "udp", "address": "198.51.100.9", "port": 3478}], "admin": {"enabled": false}}
        """)
    }

    /// GET on Tern's admin endpoint, through curl in the tern namespace: status (0: no answer) and body.
    static func admin(_ path: String) -> (status: Int, body: String) {
        guard let r = try? runTool("/usr/sbin/ip", ["netns", "exec", ternNS, "/usr/bin/curl", "-s", "-m", "2", "-w", "\n%{http_code}",
                                                   "http://127.0.0.1:8478\(path)"], timeout: 5) else { return (0, "") }
        let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    /// The IPv4 entry of `/stats` externalAddresses, and the whole body (for messages).
    static func ipv4Status() -> (status: [String: Any]?, body: String) {
        let body = admin("/stats").body
        let stats = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
        let list = stats?["externalAddresses"] as? [[String: Any]] ?? []
        return (list.first { $0["family"] as? String == "ipv4" }, body)
    }

    /// Polls `condition` every 100 ms until it holds or `seconds` pass (bounded in count too).
    @discardableResult
    static func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        for _ in 0..<Int(seconds * 10) + 1 {
            if condition() { return true }
            if Date() >= deadline { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return condition()
    }

    /// `tern probe` from the client namespace (198.51.100.20, on the internet side).
    static func probe(_ arguments: [String]) throws -> (status: Int32, report: [String: Any]?, output: String) {
        let r = try runTool("/usr/sbin/ip", ["netns", "exec", clientNS, TernProcess.executableURL.path, "probe"] + arguments + ["--json"], timeout: 30)
        return (r.status, (try? JSONSerialization.jsonObject(with: Data(r.output.utf8))) as? [String: Any], r.output)
    }

    /// Starts the STUN server and then Tern, and waits (bounded) until Tern is ready.
    static func startBoth() throws -> (stun: NamespacedTern, tern: NamespacedTern) {
        let stun = try startStunServer()
        let tern: NamespacedTern
        do { tern = try NamespacedTern(in: ternNS, config: ternConfig) } catch { stun.stop(); throw error }
        return (stun, tern)
    }

    @Test("Behind a 1:1 NAT: 503 until the STUN server answers, then 198.51.100.5 discovered and advertised; a client on the internet side relays through it",
          .timeLimit(.minutes(1)))
    func oneToOne() throws {
        try Self.build(oneToOne: true)
        defer { Self.teardown() }
        let tern = try NamespacedTern(in: Self.ternNS, config: Self.ternConfig)
        defer { tern.stop() }
        #expect(Self.waitUntil(seconds: 10) { Self.admin("/healthz").status == 200 }, "the admin endpoint did not come up: \(tern.output)")

        // 2. No STUN server yet: not ready, pending; the first attempt (3.5 s of retransmissions) then fails.
        let early = Self.ipv4Status().status
        #expect(Self.admin("/readyz").status == 503, "\(tern.output)")
        #expect(["pending", "failed"].contains(early?["state"] as? String ?? "-"), "\(early ?? [:])")
        #expect(early?["advertised"] == nil, "\(early ?? [:])")
        var failed: [String: Any]? = nil
        Self.waitUntil(seconds: 8) {
            failed = Self.ipv4Status().status
            return failed?["state"] as? String == "failed"
        }
        #expect(failed?["state"] as? String == "failed", "\(failed ?? [:])\n\(tern.output)")
        #expect((failed?["error"] as? String)?.contains("198.51.100.9:3478") == true, "\(failed ?? [:])")
        #expect(Self.admin("/readyz").status == 503)
        // Meanwhile no relay address is handed out: not the private one, which nobody outside reaches.
        let early440 = try Self.probe(["turn:\(Self.publicIP):3478", "--user", "alice", "--password", "wonderland", "--count", "1"])
        #expect(early440.report?["relayedAddress"] == nil && early440.output.contains("440"), "\(early440.output)")

        // 1. The STUN server comes up: a retry (backoff 1 s, 2 s, ...) discovers the public address.
        let stun = try Self.startStunServer()
        defer { stun.stop() }
        let started = Date()
        let ready = Self.waitUntil(seconds: 20) { Self.admin("/readyz").status == 200 }
        #expect(ready, "not ready 20 s after the STUN server started: \(Self.ipv4Status().body)\ntern:\n\(tern.output)\nstun:\n\(stun.output)")
        print("discovery: ready \(String(format: "%.1f", Date().timeIntervalSince(started))) s after the STUN server started")
        let (status, body) = Self.ipv4Status()
        #expect(status?["state"] as? String == "discovered", "\(body)")
        #expect(status?["advertised"] as? String == Self.publicIP, "\(body)")
        #expect(status?["source"] as? String == Self.stunServer, "\(body)")
        // The NAT kept the port: mapped is the public address with the local port.
        let local = (status?["local"] as? String).flatMap(TransportAddress.init)
        let mapped = (status?["mapped"] as? String).flatMap(TransportAddress.init)
        #expect(mapped?.ip == IPAddress(Self.publicIP) && mapped?.port == local?.port && (50000...50999).contains(local?.port ?? 0), "\(body)")

        // 3. A client on the internet side allocates through the public address and relays (relay to relay, hairpinning in the NAT).
        let r = try Self.probe(["turn:\(Self.publicIP):3478", "--user", "alice", "--password", "wonderland", "--count", "30"])
        print("probe: relayed \(r.report?["relayedAddress"] ?? "?"), mapped \(r.report?["mappedAddress"] ?? "?")")
        #expect(r.status == 0, "\(r.output)\ntern:\n\(tern.output)")
        #expect((r.report?["relayedAddress"] as? String)?.hasPrefix("\(Self.publicIP):") == true, "\(r.output)")
        #expect((r.report?["mappedAddress"] as? String)?.hasPrefix("\(Self.clientIP):") == true, "\(r.output)")
        let checks = r.report?["checks"] as? [[String: Any]] ?? []
        #expect(checks.contains { $0["name"] as? String == "relay" && $0["ok"] as? Bool == true }, "\(r.output)")
        #expect(checks.allSatisfy { $0["ok"] as? Bool == true }, "\(r.output)")
        #expect(((r.report?["relay"] as? [String: Any])?["echoedBack"] as? Int) == 30, "\(r.output)")
        // Over TCP too: the advertised relay address does not depend on the client's transport.
        let tcp = try Self.probe(["turn:\(Self.publicIP):3478?transport=tcp", "--secret", Self.secret, "--count", "10"])
        #expect(tcp.status == 0 && (tcp.report?["relayedAddress"] as? String)?.hasPrefix("\(Self.publicIP):") == true, "\(tcp.output)")
    }

    @Test("Behind a NAT that changes ports (snat fully-random): not_one_to_one, /readyz 503, no relay address handed out (440)",
          .timeLimit(.minutes(1)))
    func notOneToOne() throws {
        try Self.build(oneToOne: false)
        defer { Self.teardown() }
        let (stun, tern) = try Self.startBoth()
        defer { tern.stop(); stun.stop() }
        var status: [String: Any]? = nil
        var body = ""
        let settled = Self.waitUntil(seconds: 15) {
            (status, body) = Self.ipv4Status()
            return status?["state"] as? String == "not_one_to_one"
        }
        #expect(settled, "\(body)\ntern:\n\(tern.output)")
        #expect(status?["advertised"] == nil, "\(body)")
        #expect(status?["source"] as? String == Self.stunServer, "\(body)")
        let local = (status?["local"] as? String).flatMap(TransportAddress.init)
        let mapped = (status?["mapped"] as? String).flatMap(TransportAddress.init)
        #expect(mapped?.ip == IPAddress(Self.publicIP) && local != nil && mapped?.port != local?.port, "\(body)")
        #expect((status?["error"] as? String)?.contains("not 1:1") == true, "\(body)")
        #expect(Self.admin("/readyz").status == 503, "\(body)")
        // No relay address is handed out in the NAT's name, nor the private one nobody outside can
        // reach: Allocate gets 440 for the family until discovery settles.
        let r = try Self.probe(["turn:\(Self.publicIP):3478", "--user", "alice", "--password", "wonderland", "--count", "5"])
        #expect(r.status == 1, "\(r.output)")
        #expect(r.report?["relayedAddress"] == nil, "\(r.output)")
        #expect(r.output.contains("440"), "\(r.output)")
        // Still retrying, still not advertised (a later attempt hits another random port).
        #expect(Self.ipv4Status().status?["advertised"] == nil)
    }

    @Test("Headless Chromium in the client namespace calls relay-only through 198.51.100.5, the discovered address",
          .enabled(if: BrowserHarness.isAvailable, "needs chromium and chromedriver"), .timeLimit(.minutes(1)))
    func browser() throws {
        try Self.build(oneToOne: true)
        defer { Self.teardown() }
        let (stun, tern) = try Self.startBoth()
        defer { tern.stop(); stun.stop() }
        let ready = Self.waitUntil(seconds: 15) { Self.admin("/readyz").status == 200 }
        try #require(ready, "\(Self.ipv4Status().body)\ntern:\n\(tern.output)")
        #expect(Self.ipv4Status().status?["advertised"] as? String == Self.publicIP)
        // A TURN REST credential for the shared secret.
        let username = "\(Int(Date().timeIntervalSince1970) + 3600):browser"
        let password = HeavyInteropTests.BrowserRelayTests.restPassword(secret: Self.secret, username: username)
        let server: [String: Any] = ["urls": ["turn:\(Self.publicIP):3478?transport=udp"], "username": username, "credential": password]
        let ice = String(decoding: try JSONSerialization.data(withJSONObject: [server]), as: UTF8.self)
        let r = try BrowserHarness.runRelayTest(iceServers: ice, timeout: 30, netns: Self.clientNS)
        print("browser in \(Self.clientNS): data channel open after \(r.dataChannelOpenMs.map { "\(Int($0)) ms" } ?? "never"), "
              + "\(r.framesDecoded) frames decoded, pairs \(r.localCandidateTypes)/\(r.remoteCandidateTypes)")
        #expect(r.error == nil, "\(r)\ntern:\n\(tern.output)")
        #expect(r.dataChannelOpenMs != nil, "\(r)")
        #expect(r.messagesOK, "\(r)")
        #expect(r.framesDecoded >= 30, "\(r)")
        #expect(r.localCandidateTypes == ["relay", "relay"], "\(r)")
        #expect(r.remoteCandidateTypes == ["relay", "relay"], "\(r)")
        #expect(r.iceCandidateErrors.isEmpty, "\(r)")
        // Every relay candidate either peer gathered is on the public address ("... <ip> <port> typ relay ...").
        let relayCandidates = r.log.filter { $0.contains(" candidate ") && $0.contains(" typ relay") }
        let addresses = relayCandidates.compactMap { line -> String? in
            let words = line.split(separator: " ")
            guard let typ = words.firstIndex(of: "typ"), typ >= 2 else { return nil }
            return String(words[typ - 2])
        }
        #expect(relayCandidates.contains { $0.contains("pc1 candidate") } && relayCandidates.contains { $0.contains("pc2 candidate") }, "\(r)")
        print("browser relay candidates on \(addresses)")
        #expect(!addresses.isEmpty && addresses.allSatisfy { $0 == Self.publicIP }, "relay candidates on \(addresses): \(r)")
    }
}
