import Foundation
import STUN
import Testing

/// `tern probe` against Tern and against coturn's `turnserver`: it must diagnose any server.
@Suite("tern probe against Tern and coturn", .serialized)
struct ProbeTests {
    static var tern: String { TernProcess.executableURL.path }

    static func probe(_ arguments: [String]) throws -> (status: Int32, report: [String: Any]?, output: String) {
        let result = try runTool(tern, ["probe"] + arguments + ["--json"], timeout: 60)
        let report = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: Any]
        return (result.status, report, result.output)
    }

    /// Every check passed, the relay lost nothing, and at least a WebRTC-sized datagram relays.
    static func expectHealthy(_ r: (status: Int32, report: [String: Any]?, output: String), _ label: String) {
        #expect(r.status == 0, "\(label): \(r.output)")
        let checks = r.report?["checks"] as? [[String: Any]] ?? []
        #expect(Set(checks.compactMap { $0["name"] as? String }).isSuperset(of: ["binding", "authentication", "allocate", "relay", "largest datagram"]),
                "\(label): \(r.output)")
        #expect(checks.allSatisfy { $0["ok"] as? Bool == true }, "\(label): \(r.output)")
        let relay = r.report?["relay"] as? [String: Any]
        #expect((relay?["lossPercent"] as? NSNumber)?.doubleValue == 0, "\(label)")
        #expect((relay?["echoedBack"] as? Int) == 30, "\(label)")
        #expect((r.report?["largestDatagram"] as? Int ?? 0) >= 1200, "\(label)")
        #expect(r.report?["relayedAddress"] is String, "\(label)")
    }

    @Test("Against tern serve: every check passes over UDP and TCP, static and TURN REST credentials, with the default (closed) peer policy")
    func againstTern() throws {
        let tern = try TernProcess(config: """
        {"listeners": [{"transport": "udp", "address": "127.0.0.1", "port": 0}, {"transport": "tcp", "address": "127.0.0.1", "port": 0}],
         "relay": {"portRange": [61000, 61999]}, "auth": {"users": {"alice": "wonderland"}, "secrets": ["s3cret"]}}
        """)
        defer { _ = tern.terminate() }
        #expect(tern.waitForLog("tern listening"), "\(tern.stderr)")
        let bound = tern.boundListeners()
        let udp = try #require(bound.first { $0.transport == "udp" }?.address)
        let tcp = try #require(bound.first { $0.transport == "tcp" }?.address)
        Self.expectHealthy(try Self.probe(["turn:\(udp)", "--user", "alice", "--password", "wonderland", "--count", "30"]), "tern udp")
        Self.expectHealthy(try Self.probe(["turn:\(tcp)?transport=tcp", "--secret", "s3cret", "--count", "30"]), "tern tcp")
        let stun = try Self.probe(["stun:\(udp)"])
        #expect(stun.status == 0 && (stun.report?["mappedAddress"] as? String)?.hasPrefix("127.0.0.1:") == true, "\(stun.output)")
        // A wrong password fails the authentication check: exit 1.
        let wrong = try Self.probe(["turn:\(udp)", "--user", "alice", "--password", "nope"])
        #expect(wrong.status == 1, "\(wrong.output)")
        // Usage errors: exit 2.
        for args in [["http://x"], ["turn:\(udp)"], ["turn:\(udp)", "--user", "a"], ["turn:\(udp)", "--secret", "s", "--user", "a", "--password", "b"]] {
            #expect(try runTool(Self.tern, ["probe"] + args).status == 2, "\(args)")
        }
    }

    @Test("RFC 5780: against tern serve with natBehavior on 127.0.0.1 and 127.0.0.2, the probe reports no NAT, endpoint-independent filtering and hairpinning")
    func natBehavior() throws {
        let p1 = HeavyInteropTests.TurnClientInteropTests.freeUDPPort()
        var p2 = HeavyInteropTests.TurnClientInteropTests.freeUDPPort()
        if p2 == p1 { p2 = p1 &+ 1 }
        let tern = try TernProcess(config: """
        {"listeners": [{"transport": "udp", "address": "127.0.0.1", "port": \(p1)}],
         "natBehavior": {"otherAddress": "127.0.0.2", "otherPort": \(p2)}}
        """)
        defer { _ = tern.terminate() }
        #expect(tern.waitForLog("tern listening"), "\(tern.stderr)")
        #expect(tern.boundListeners().count == 4, "the three other addresses are bound: \(tern.stderr)")
        let r = try Self.probe(["stun:127.0.0.1:\(p1)"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.report?["otherAddress"] as? String == "127.0.0.2:\(p2)")
        #expect(r.report?["natMapping"] as? String == "no NAT")
        #expect(r.report?["natFiltering"] as? String == "endpoint-independent")
        #expect(r.report?["hairpinning"] as? Bool == true)
    }

    @Test("turns: (TLS): against tern serve and coturn with a certificate trusted through --ca; an untrusted one fails the tls check")
    func overTLS() throws {
        let cert = HeavyInteropTests.TurnClientInteropTests.certificate
        let tern = try TernProcess(config: """
        {"listeners": [{"transport": "tls", "address": "127.0.0.1", "port": 0}],
         "tls": {"certificate": "\(cert.cert)", "privateKey": "\(cert.key)"}, "auth": {"users": {"alice": "wonderland"}}}
        """)
        defer { _ = tern.terminate() }
        #expect(tern.waitForLog("tern listening"), "\(tern.stderr)")
        let tls = try #require(tern.boundListeners().first { $0.transport == "tls" }?.address)
        let url = "turns:localhost:\(tls.port)?transport=tcp"
        Self.expectHealthy(try Self.probe([url, "--user", "alice", "--password", "wonderland", "--ca", cert.cert, "--count", "30"]), "tern tls")
        let untrusted = try Self.probe([url, "--user", "alice", "--password", "wonderland"])
        #expect(untrusted.status == 1, "\(untrusted.output)")
        #expect(((untrusted.report?["checks"] as? [[String: Any]])?.first?["detail"] as? String)?.contains("not trusted") == true, "\(untrusted.output)")
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/turnserver") else { return }
        let port = HeavyInteropTests.TurnClientInteropTests.freeTCPPort()
        let coturn = Process()
        coturn.executableURL = URL(fileURLWithPath: "/usr/bin/turnserver")
        coturn.arguments = ["-n", "--listening-ip", "127.0.0.1", "--tls-listening-port", "\(port)", "--listening-port", "\(port &+ 1)",
                            "--relay-ip", "127.0.0.1", "--min-port", "60000", "--max-port", "60999", "--lt-cred-mech",
                            "--user", "alice:wonderland", "--realm", "coturn.test", "--allow-loopback-peers", "--no-cli", "--no-dtls",
                            "--cert", cert.cert, "--pkey", cert.key, "--log-file", "stdout", "--simple-log"]
        coturn.standardOutput = FileHandle.nullDevice
        coturn.standardError = FileHandle.nullDevice
        try coturn.run()
        defer { kill(coturn.processIdentifier, SIGKILL); coturn.waitUntilExit() }
        var r = try Self.probe(["turns:localhost:\(port)", "--user", "alice", "--password", "wonderland", "--ca", cert.cert, "--count", "30"])
        for _ in 0..<30 where r.status != 0 {
            Thread.sleep(forTimeInterval: 0.1)
            r = try Self.probe(["turns:localhost:\(port)", "--user", "alice", "--password", "wonderland", "--ca", cert.cert, "--count", "30"])
        }
        Self.expectHealthy(r, "coturn tls")
    }

    @Test("Against coturn's turnserver: every check passes over UDP and TCP", .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/turnserver")))
    func againstCoturn() throws {
        let port = HeavyInteropTests.TurnClientInteropTests.freeUDPPort()
        let coturn = Process()
        coturn.executableURL = URL(fileURLWithPath: "/usr/bin/turnserver")
        coturn.arguments = ["-n", "--listening-ip", "127.0.0.1", "--listening-port", "\(port)", "--relay-ip", "127.0.0.1",
                            "--min-port", "60000", "--max-port", "60999", "--lt-cred-mech", "--user", "alice:wonderland",
                            "--realm", "coturn.test", "--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls",
                            "--log-file", "stdout", "--simple-log"]
        coturn.standardOutput = FileHandle.nullDevice
        coturn.standardError = FileHandle.nullDevice
        try coturn.run()
        // SIGKILL: children of the test runner inherit a signal mask that blocks SIGTERM.
        defer { kill(coturn.processIdentifier, SIGKILL); coturn.waitUntilExit() }
        var up = false
        for _ in 0..<50 where !up {
            up = (try Self.probe(["stun:127.0.0.1:\(port)", "--timeout", "200"])).status == 0
            if !up { Thread.sleep(forTimeInterval: 0.1) }
        }
        #expect(up, "coturn did not answer Binding on \(port)")
        let udp = try Self.probe(["turn:127.0.0.1:\(port)", "--user", "alice", "--password", "wonderland", "--count", "30"])
        Self.expectHealthy(udp, "coturn udp")
        #expect(udp.report?["realm"] as? String == "coturn.test")
        Self.expectHealthy(try Self.probe(["turn:127.0.0.1:\(port)?transport=tcp", "--user", "alice", "--password", "wonderland", "--count", "30"]),
                           "coturn tcp")
    }
}
