import Foundation
import STUN
import Testing

/// `tern probe` behind real NATs: three network namespaces (client, NAT, public) joined by veth
/// pairs, nftables masquerading in the NAT, `tern serve` with RFC 5780 on two public addresses.
/// A plain masquerade keeps the client's port for every destination (a cone NAT: endpoint-independent
/// mapping); `masquerade fully-random` picks a port per destination (a symmetric NAT). The probe
/// Root, the tools, and a network namespace can actually be made here (a container may forbid it).
enum NamespaceSupport {
    static let available: Bool = {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft"),
              FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") else { return false }
        let probe = "ternprobe\(getpid() % 100_000)"
        guard (try? runTool("/usr/sbin/ip", ["netns", "add", probe]))?.status == 0 else { return false }
        _ = try? runTool("/usr/sbin/ip", ["netns", "del", probe])
        return true
    }()
}

/// `tern probe` behind real NATs: three network namespaces (client, NAT, public) joined by veth
/// pairs, nftables masquerading in the NAT, `tern serve` with RFC 5780 on two public addresses.
/// A plain masquerade keeps the client's port for every destination (a cone NAT: endpoint-independent
/// mapping); `masquerade fully-random` picks a port per destination (a symmetric NAT). The probe
/// must tell them apart. Needs root, `ip` and `nft` (scripts/test.sh installs nftables).
@Suite("tern probe tells a cone NAT from a symmetric one, in network namespaces", .serialized,
       .enabled(if: NamespaceSupport.available, "needs root, ip, nft and the right to create network namespaces"))
struct NatNamespaceTests {
    static let tag = String(getpid() % 100_000)
    static let client = "terncl\(tag)", nat = "ternnat\(tag)", pub = "ternpub\(tag)"

    static func run(_ args: [String]) throws -> (status: Int32, output: String) { try runTool("/usr/sbin/ip", args) }

    /// Builds client -> NAT -> public; `symmetric` picks the masquerade's port per destination.
    static func build(symmetric: Bool) throws {
        teardown()
        for ns in [client, nat, pub] { _ = try run(["netns", "add", ns]) }
        let (c0, n0, n1, p0) = ("tc\(tag)", "tn\(tag)", "tm\(tag)", "tp\(tag)")
        let steps: [[String]] = [
            ["link", "add", c0, "type", "veth", "peer", "name", n0],
            ["link", "add", n1, "type", "veth", "peer", "name", p0],
            ["link", "set", c0, "netns", client], ["link", "set", n0, "netns", nat],
            ["link", "set", n1, "netns", nat], ["link", "set", p0, "netns", pub],
            ["-n", client, "addr", "add", "10.77.0.2/24", "dev", c0], ["-n", client, "link", "set", c0, "up"],
            ["-n", client, "link", "set", "lo", "up"], ["-n", client, "route", "add", "default", "via", "10.77.0.1"],
            ["-n", nat, "addr", "add", "10.77.0.1/24", "dev", n0], ["-n", nat, "link", "set", n0, "up"],
            ["-n", nat, "addr", "add", "198.51.100.1/24", "dev", n1], ["-n", nat, "link", "set", n1, "up"],
            ["-n", pub, "addr", "add", "198.51.100.2/24", "dev", p0], ["-n", pub, "addr", "add", "198.51.100.3/24", "dev", p0],
            ["-n", pub, "link", "set", p0, "up"], ["-n", pub, "link", "set", "lo", "up"],
            ["netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            ["netns", "exec", nat, "nft", "add", "table", "ip", "nat"],
            ["netns", "exec", nat, "nft", "add chain ip nat post { type nat hook postrouting priority 100 ; }"],
            ["netns", "exec", nat, "nft", "add", "rule", "ip", "nat", "post", "oifname", n1, "masquerade"] + (symmetric ? ["fully-random"] : []),
        ]
        for step in steps {
            let r = try run(step)
            guard r.status == 0 else { throw TestFailure("ip \(step.joined(separator: " ")): \(r.output)") }
        }
    }

    static func teardown() {
        for ns in [client, nat, pub] { _ = try? run(["netns", "del", ns]) }
    }

    struct TestFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    @Test("Cone (endpoint-independent mapping) and symmetric (address-and-port-dependent mapping) are told apart; both filter by address and port",
          arguments: [false, true])
    func coneOrSymmetric(symmetric: Bool) throws {
        try Self.build(symmetric: symmetric)
        defer { Self.teardown() }
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("tern-nat-\(UUID().uuidString).json")
        try #"{"listeners": [{"transport": "udp", "address": "198.51.100.2", "port": 3478}], "natBehavior": {"otherAddress": "198.51.100.3", "otherPort": 3479}, "admin": {"enabled": false}}"#
            .write(to: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: config) }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        server.arguments = ["netns", "exec", Self.pub, TernProcess.executableURL.path, "serve", "--config", config.path]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        // SIGKILL: children of the test runner inherit a signal mask that blocks SIGTERM.
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        var report: [String: Any]? = nil
        var output = ""
        for _ in 0..<30 where report?["natMapping"] == nil {
            let r = try Self.run(["netns", "exec", Self.client, TernProcess.executableURL.path, "probe", "stun:198.51.100.2:3478", "--json",
                                  "--timeout", "500"])
            output = r.output
            report = (try? JSONSerialization.jsonObject(with: Data(r.output.utf8))) as? [String: Any]
            if report?["natMapping"] == nil { Thread.sleep(forTimeInterval: 0.1) }
        }
        print("nat \(symmetric ? "symmetric" : "cone"): \(report?["natMapping"] ?? "?") / \(report?["natFiltering"] ?? "?"), mapped \(report?["mappedAddress"] ?? "?")")
        #expect((report?["mappedAddress"] as? String)?.hasPrefix("198.51.100.1:") == true, "\(output)")
        #expect(report?["natMapping"] as? String == (symmetric ? "address-and-port-dependent" : "endpoint-independent"), "\(output)")
        #expect(report?["natFiltering"] as? String == "address-and-port-dependent", "\(output)")
    }
}
