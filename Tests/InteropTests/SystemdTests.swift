import Foundation
import Testing

/// A NOTIFY_SOCKET of the test's own: a unix datagram socket that records what `tern` tells systemd.
final class NotifySocket {
    let fd: Int32
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("tern-notify-\(UUID().uuidString.prefix(8))").path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes + [0])
        }
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard r == 0 else { throw CocoaError(.fileWriteUnknown) }
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Messages received until `stop` matches one (or `timeout` passes).
    func collect(until stop: (String) -> Bool, timeout: TimeInterval = 10) -> [String] {
        var out: [String] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buf = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 4096, 0) }
            if n > 0 {
                let m = String(decoding: buf[0..<n], as: UTF8.self)
                out.append(m)
                if stop(m) { break }
            }
        }
        return out
    }
}

@Suite("systemd integration", .serialized)
struct SystemdTests {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("READY=1 with STATUS once listening, WATCHDOG=1 at half the interval, RELOADING/READY on SIGHUP, STOPPING on SIGTERM")
    func notify() throws {
        let notify = try NotifySocket()
        let tern = try TernProcess(config: #"{"listeners": [{"transport": "udp", "address": "127.0.0.1", "port": 0}]}"#,
                                   environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        defer { _ = tern.terminate() }
        let ready = notify.collect(until: { $0.contains("READY=1") })
        #expect(ready.last?.contains("READY=1") == true, "\(ready) \(tern.stderr)")
        #expect(ready.last?.contains("STATUS=serving: 1 listeners (udp 127.0.0.1:") == true, "\(ready)")
        let pings = notify.collect(until: { $0 == "WATCHDOG=1" }, timeout: 3)
        #expect(pings.contains("WATCHDOG=1"), "\(pings)")
        kill(tern.process.processIdentifier, SIGHUP)
        let reload = notify.collect(until: { $0.contains("READY=1") }, timeout: 5).filter { $0 != "WATCHDOG=1" }
        #expect(reload.first?.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") == true, "\(reload)")
        #expect(reload.last?.contains("READY=1") == true, "\(reload)")
        kill(tern.process.processIdentifier, SIGTERM)
        let stopping = notify.collect(until: { $0.contains("STOPPING=1") }, timeout: 5)
        #expect(stopping.contains { $0.contains("STOPPING=1") }, "\(stopping)")
    }

    @Test("deploy/tern.service is hardened: systemd-analyze security rates it 2.0 or lower, and verify is clean",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze")))
    func unitHardening() throws {
        let unit = Self.repoRoot.appendingPathComponent("deploy/tern.service").path
        let security = try runTool("/usr/bin/systemd-analyze", ["security", "--offline=true", unit])
        let line = security.output.split(separator: "\n").first { $0.contains("Overall exposure level") } ?? ""
        let score = line.split(separator: ":").last.flatMap { Double($0.trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") }
        let exposure = try #require(score, "\(security.output.suffix(500))")
        print("systemd-analyze security: exposure \(exposure)")
        #expect(exposure <= 2.0)
        // verify needs the ExecStart binary to exist: check a copy that points at the built one.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tern-unit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let copy = dir.appendingPathComponent("tern.service")
        try String(contentsOfFile: unit, encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/tern", with: TernProcess.executableURL.path)
            .write(to: copy, atomically: true, encoding: .utf8)
        let verify = try runTool("/usr/bin/systemd-analyze", ["verify", copy.path])
        let complaints = verify.output.split(separator: "\n").filter { $0.contains("tern.service") }
        #expect(complaints.isEmpty, "\(verify.output)")
    }

    @Test("deploy/tern-offload.conf is a clean drop-in that adds CAP_BPF, CAP_NET_ADMIN and bpf(2), nothing else",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze")))
    func offloadDropIn() throws {
        let dropIn = try String(contentsOf: Self.repoRoot.appendingPathComponent("deploy/tern-offload.conf"), encoding: .utf8)
        let settings = dropIn.split(separator: "\n").filter { !$0.hasPrefix("#") && $0.contains("=") }.map(String.init)
        #expect(settings == ["CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN", "AmbientCapabilities=CAP_BPF CAP_NET_ADMIN",
                             "SystemCallFilter=bpf", "RestrictAddressFamilies=AF_NETLINK"])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tern-unit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("tern.service.d"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try String(contentsOf: Self.repoRoot.appendingPathComponent("deploy/tern.service"), encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/tern", with: TernProcess.executableURL.path)
            .write(to: dir.appendingPathComponent("tern.service"), atomically: true, encoding: .utf8)
        try dropIn.write(to: dir.appendingPathComponent("tern.service.d/offload.conf"), atomically: true, encoding: .utf8)
        // verify reads the drop-in next to the unit (a bad line in it is reported as offload.conf:N).
        let verify = try runTool("/usr/bin/systemd-analyze", ["verify", dir.appendingPathComponent("tern.service").path])
        let complaints = verify.output.split(separator: "\n").filter { $0.contains("tern.service") || $0.contains("offload.conf") }
        #expect(complaints.isEmpty, "\(verify.output)")
    }

    @Test("Socket activation: a socket passed in by systemd-socket-activate is served instead of binding",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-socket-activate")))
    func socketActivation() throws {
        let port = HeavyInteropTests.TurnClientInteropTests.freeTCPPort()
        let configURL = FileManager.default.temporaryDirectory.appendingPathComponent("tern-sa-\(UUID().uuidString).json")
        try #"{"listeners": [{"transport": "tcp", "address": "127.0.0.1", "port": \#(port)}]}"#
            .write(to: configURL, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: configURL) }
        let activator = Process()
        activator.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-socket-activate")
        activator.arguments = ["-l", "127.0.0.1:\(port)", TernProcess.executableURL.path, "serve", "--config", configURL.path]
        let log = Pipe()
        activator.standardError = log
        activator.standardOutput = log
        try activator.run()
        // SIGKILL: children of the test runner inherit a signal mask that blocks SIGTERM.
        defer { kill(activator.processIdentifier, SIGKILL); activator.waitUntilExit() }
        // The activator listens at once and execs tern on the first connection.
        var answered = false
        for _ in 0..<50 where !answered {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let c = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            if c != 0 { Thread.sleep(forTimeInterval: 0.1); continue }
            var request: [UInt8] = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42]
            request += (0..<12).map { _ in UInt8.random(in: 0...255) }
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            var reply = [UInt8](repeating: 0, count: 64)
            let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 64, 0) }
            answered = n >= 32 && reply[0] == 0x01 && reply[1] == 0x01 && Array(reply[8..<20]) == Array(request[8..<20])
        }
        #expect(answered, "no Binding answer through the activated socket")
    }
}
