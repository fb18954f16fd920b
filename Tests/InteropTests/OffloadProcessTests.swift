import Foundation
import STUN
import Testing

/// `io.offload: "tc"` as an operator runs it: the tern binary, its capabilities, and its exit.
@Suite("Kernel fast path: the process", .serialized)
struct OffloadProcessTests {
    static let config = #"""
        {"listeners": [{"transport": "udp", "address": "127.0.0.1", "port": 0}],
         "io": {"offload": "tc", "offloadInterfaces": ["lo"]}}
        """#
    static let ci = ProcessInfo.processInfo.environment["CI"] == "true"
    static let bpftool = "/usr/sbin/bpftool"

    /// The BPF programs a process holds, from its descriptors' fdinfo (`prog_id:` lines).
    static func programIDs(of pid: Int32) -> Set<Int> {
        let dir = "/proc/\(pid)/fdinfo"
        var ids: Set<Int> = []
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            guard let text = try? String(contentsOfFile: "\(dir)/\(fd)", encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") where line.hasPrefix("prog_id:") {
                if let id = Int(line.dropFirst("prog_id:".count).trimmingCharacters(in: .whitespaces)) { ids.insert(id) }
            }
        }
        return ids
    }

    @Test("Without CAP_BPF and CAP_NET_ADMIN, tern says why and serves in user space",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
    func refusedCapabilities() throws {
        let tern = try TernProcess(config: Self.config,
                                   wrapper: ["/usr/bin/setpriv", "--bounding-set=-bpf,-net_admin,-sys_admin,-perfmon", "--"])
        defer { _ = tern.terminate() }
        #expect(tern.waitForLog("\"tc\" is unavailable; relaying in user space"), "\(tern.stderr.suffix(800))")
        #expect(tern.stderr.contains("Operation not permitted"), "\(tern.stderr.suffix(800))")
        #expect(tern.waitForLog("admin listening"))
        let admin = try #require(tern.adminAddress())
        let body = try #require(httpRequest(admin, "/stats")?.body)
        let stats = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        let offload = try #require(stats["offload"] as? [String: Any])
        #expect(offload["active"] as? Bool == false)
        #expect((offload["unavailableReason"] as? String)?.contains("Operation not permitted") == true)
        #expect(Self.programIDs(of: tern.process.processIdentifier).isEmpty)
    }

    @Test("Killed with SIGKILL, tern leaves nothing attached: the kernel drops its links and program")
    func nothingStaysAttached() throws {
        let tern = try TernProcess(config: Self.config)
        let pid = tern.process.processIdentifier
        defer { _ = tern.terminate() }
        guard tern.waitForLog("relayed in the kernel", timeout: 10) else {
            if Self.ci { Issue.record("io.offload did not start in CI: \(tern.stderr.suffix(800))") }
            else { print("OffloadProcessTests: skipped, offload unavailable here: \(tern.stderr.suffix(300))") }
            return
        }
        let held = Self.programIDs(of: pid)
        #expect(held.count == 1, "\(held)")
        let id = try #require(held.first)
        if FileManager.default.isExecutableFile(atPath: Self.bpftool) {
            let shown = try runTool(Self.bpftool, ["prog", "show", "id", String(id)])
            #expect(shown.status == 0 && shown.output.contains("tern_relay"), "\(shown.output)")
            let links = try runTool(Self.bpftool, ["link", "show"])
            #expect(links.output.contains("prog \(id)"), "\(links.output)")
        }
        kill(pid, SIGKILL)
        tern.process.waitUntilExit()
        // The link and program go once the kernel has released the dead process's descriptors.
        var gone = false
        for _ in 0..<100 where !gone {
            gone = (try? runTool(Self.bpftool, ["prog", "show", "id", String(id)]))?.status != 0
            if !gone { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(gone, "program \(id) is still loaded after tern was killed")
        let links = try runTool(Self.bpftool, ["link", "show"])
        #expect(!links.output.contains("prog \(id)"), "\(links.output)")
    }
}
