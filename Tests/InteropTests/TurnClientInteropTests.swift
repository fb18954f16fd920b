import Foundation
import STUN
import Testing

/// coturn's turnutils_uclient relaying through `tern serve` to turnutils_peer (an echo peer):
/// an independent TURN client implementation against ours, over real loopback sockets.
@Suite("tern serve with coturn's turnutils_uclient and turnutils_peer", .serialized)
struct TurnClientInteropTests {
    static let uclient = "/usr/bin/turnutils_uclient"
    static let peerTool = "/usr/bin/turnutils_peer"

    /// A UDP port that was free a moment ago (the peer tool needs a fixed port number).
    static func freeUDPPort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        _ = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return UInt16(bigEndian: addr.sin_port)
    }

    static let config = """
    {
      "realm": "tern.test",
      "workers": 2,
      "listeners": [
        {"transport": "udp", "address": "127.0.0.1", "port": 0},
        {"transport": "udp", "address": "::1", "port": 0},
        {"transport": "tcp", "address": "127.0.0.1", "port": 0}
      ],
      "relay": {"ipv4": "127.0.0.1", "ipv6": "::1", "portRange": [61000, 61999]},
      "auth": {"users": {"alice": "wonderland"}, "secrets": ["s3cret"]},
      "peers": {"allow": ["127.0.0.0/8", "::1/128"]}
    }
    """

    /// "Total lost packets 0 (0.000000%)" and the packets sent, from uclient's summary.
    static func summary(_ output: String) -> (sent: Int, lost: Int)? {
        var sent: Int? = nil
        var lost: Int? = nil
        for line in output.split(separator: "\n") {
            if let r = line.range(of: "tot_send_msgs="), !line.contains("msz=") {
                sent = Int(line[r.upperBound...].prefix { $0.isNumber })
            }
            if let r = line.range(of: "Total lost packets ") {
                lost = Int(line[r.upperBound...].prefix { $0.isNumber })
            }
        }
        guard let sent, let lost else { return nil }
        return (sent, lost)
    }

    @Test("Zero loss over channels, Send indications, IPv6 relays, shared secrets, dual allocations, DONT-FRAGMENT and TCP",
          arguments: [
            ["-u", "alice", "-w", "wonderland", "-e", "127.0.0.1"],
            ["-s", "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1"],
            ["-x", "-u", "alice", "-w", "wonderland", "-e", "::1"],
            ["-x", "-s", "-u", "alice", "-w", "wonderland", "-e", "::1"],
            ["-W", "s3cret", "-u", "bob", "-e", "127.0.0.1"],
            ["-Z", "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1"],
            ["-g", "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1"],
            ["-y", "-u", "alice", "-w", "wonderland"],
            ["-t", "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1"],
            ["-t", "-s", "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1"],
            // RFC 6062 TCP relaying: Connect, ConnectionAttempt and ConnectionBind between uclient's
            // own clients (-T implies -t -y).
            ["-T", "-u", "alice", "-w", "wonderland"],
            ["-T", "-W", "s3cret", "-u", "bob"],
          ])
    func relay(_ options: [String]) throws {
        let tern = try TernProcess(config: Self.config)
        defer { _ = tern.terminate() }
        #expect(tern.waitForLog("tern listening"), "tern did not start: \(tern.stderr)")
        let transport = options.contains("-t") || options.contains("-T") ? "tcp" : "udp"
        let server = try #require(tern.boundListeners().first { $0.address.ip == .loopbackV4 && $0.transport == transport })
        let peerPort = Self.freeUDPPort()
        let peer = Process()
        peer.executableURL = URL(fileURLWithPath: Self.peerTool)
        peer.arguments = ["-p", "\(peerPort)", "-L", "127.0.0.1", "-L", "::1"]
        peer.standardOutput = FileHandle.nullDevice
        peer.standardError = FileHandle.nullDevice
        try peer.run()
        // SIGKILL: children of the test runner inherit a signal mask that blocks SIGTERM.
        defer { kill(peer.processIdentifier, SIGKILL); peer.waitUntilExit() }
        Thread.sleep(forTimeInterval: 0.2)
        // 2 clients x 20 messages of 120 bytes, 5 ms apart: a small rate, as the issue asks.
        let result = try runTool(Self.uclient, options + ["-p", "\(server.address.port)", "-r", "\(peerPort)",
                                                          "-n", "20", "-m", "2", "-l", "120", "-z", "5", "127.0.0.1"],
                                 timeout: 60)
        let s = try #require(Self.summary(result.output), "no summary from turnutils_uclient: \(result.output.suffix(2000))")
        #expect(s.sent >= 40, "\(result.output.suffix(1500))")
        #expect(s.lost == 0, "\(result.output.suffix(1500))")
        #expect(!result.output.contains("error"), "\(result.output.suffix(1500))")
    }
}
