import Foundation
import STUN
import Testing

/// `io.offload: "tc"` off loopback, as production runs it: Tern in its own network namespace with
/// one veth towards a client namespace and one towards a peer namespace. The kernel path then
/// relays between devices (bpf_redirect_neigh, the checksum updated rather than left to lo), which
/// the loopback tests cannot show. coturn's uclient relays over channels to turnutils_peer, which
/// echoes every datagram back through the relay.
@Suite("Kernel fast path between devices, in network namespaces", .serialized,
       .enabled(if: NamespaceSupport.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/turnutils_uclient"),
                "needs root, ip, coturn's tools and the right to create network namespaces"))
struct OffloadNamespaceTests {
    static let tag = String(getpid() % 100_000)
    static let server = "ternos\(tag)", client = "ternoc\(tag)", peer = "ternop\(tag)"

    static func ip(_ args: [String]) throws -> (status: Int32, output: String) { try runTool("/usr/sbin/ip", args) }

    static func build() throws {
        teardown()
        for ns in [server, client, peer] { _ = try ip(["netns", "add", ns]) }
        let (c0, s0, s1, p0) = ("oc\(tag)", "os\(tag)", "ot\(tag)", "op\(tag)")
        let steps: [[String]] = [
            ["link", "add", c0, "type", "veth", "peer", "name", s0],
            ["link", "add", s1, "type", "veth", "peer", "name", p0],
            ["link", "set", c0, "netns", client], ["link", "set", s0, "netns", server],
            ["link", "set", s1, "netns", server], ["link", "set", p0, "netns", peer],
            ["-n", client, "addr", "add", "10.88.1.2/24", "dev", c0], ["-n", client, "link", "set", c0, "up"],
            ["-n", client, "link", "set", "lo", "up"], ["-n", client, "route", "add", "default", "via", "10.88.1.1"],
            ["-n", server, "addr", "add", "10.88.1.1/24", "dev", s0], ["-n", server, "link", "set", s0, "up"],
            ["-n", server, "addr", "add", "10.88.2.1/24", "dev", s1], ["-n", server, "link", "set", s1, "up"],
            ["-n", server, "link", "set", "lo", "up"],
            ["-n", peer, "addr", "add", "10.88.2.2/24", "dev", p0], ["-n", peer, "link", "set", p0, "up"],
            ["-n", peer, "link", "set", "lo", "up"], ["-n", peer, "route", "add", "default", "via", "10.88.2.1"],
        ]
        for step in steps {
            let r = try ip(step)
            guard r.status == 0 else { throw NatNamespaceTests.TestFailure("ip \(step.joined(separator: " ")): \(r.output)") }
        }
    }

    static func teardown() {
        for ns in [server, client, peer] { _ = try? ip(["netns", "del", ns]) }
    }

    /// /stats of the Tern inside the server namespace (its admin endpoint is on that namespace's lo).
    static func stats(_ tern: TernProcess) throws -> [String: Any] {
        let admin = try #require(tern.adminAddress())
        let r = try ip(["netns", "exec", server, "/usr/bin/curl", "-sf", "http://\(admin)/stats"])
        return try #require(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any], "\(r.output)")
    }

    @Test("uclient relays over channels with zero loss, and the kernel carries both legs between the veths",
          .timeLimit(.minutes(1)))
    func betweenDevices() throws {
        try Self.build()
        defer { Self.teardown() }
        let config = #"""
            {"realm": "tern.test", "listeners": [{"transport": "udp", "address": "10.88.1.1", "port": 3478}],
             "relay": {"ipv4": "10.88.2.1", "portRange": [40000, 40999]},
             "auth": {"users": {"alice": "wonderland"}}, "peers": {"allow": ["10.88.0.0/16"]},
             "io": {"offload": "tc"}}
            """#
        let tern = try TernProcess(config: config, wrapper: ["/usr/sbin/ip", "netns", "exec", Self.server])
        defer { _ = tern.terminate() }
        guard tern.waitForLog("relayed in the kernel", timeout: 10) else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { Issue.record("io.offload unavailable in CI: \(tern.stderr)") }
            else { print("OffloadNamespaceTests: offload unavailable here, skipped: \(tern.stderr.suffix(300))") }
            return
        }
        #expect(tern.waitForLog("admin listening"))
        let echo = Process()
        echo.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        echo.arguments = ["netns", "exec", Self.peer, "/usr/bin/turnutils_peer", "-p", "5000", "-L", "10.88.2.2"]
        echo.standardOutput = FileHandle.nullDevice
        echo.standardError = FileHandle.nullDevice
        try echo.run()
        defer { kill(echo.processIdentifier, SIGKILL); echo.waitUntilExit() }
        Thread.sleep(forTimeInterval: 0.3)  // turnutils_peer binds at once; uclient would only lose its first echoes
        let r = try Self.ip(["netns", "exec", Self.client, "/usr/bin/turnutils_uclient", "-u", "alice", "-w", "wonderland",
                             "-e", "10.88.2.2", "-r", "5000", "-m", "4", "-c", "-n", "100", "-l", "170", "-z", "5", "10.88.1.1"])
        let summary = try #require(HeavyInteropTests.TurnClientInteropTests.summary(r.output), "\(r.output.suffix(1500))")
        let stats = try Self.stats(tern)
        let offload = try #require(stats["offload"] as? [String: Any])
        let kernel = try #require(offload["kernel"] as? [String: Any])
        let toPeer = (kernel["relayed_to_peer"] as? NSNumber)?.intValue ?? 0
        let toClient = (kernel["relayed_to_client"] as? NSNumber)?.intValue ?? 0
        print("offload between devices: uclient sent \(summary.sent), lost \(summary.lost); kernel relayed \(toPeer) to the peer, "
              + "\(toClient) to clients; interfaces \(offload["interfaces"] ?? "?"); kernel counters \(kernel)")
        #expect(summary.sent >= 400 && summary.lost == 0, "\(r.output.suffix(1500))")
        // Each of uclient's messages goes out as ChannelData and comes back from the echo through the relay.
        #expect(toPeer >= summary.sent * 9 / 10 && toClient >= summary.sent * 9 / 10, "\(kernel)")
    }
}
