import CTernBPF
import Foundation
import Logging
import TernCore

/// The kernel fast path (`io.offload: "tc"`): the TC classifier of Sources/CTernBPF/bpf, loaded
/// through libbpf and attached at the ingress of `io.offloadInterfaces` (every interface that is up
/// by default). One per server; the workers' `OffloadFastPath`s write its maps.
///
/// Attached through TCX links (Linux 6.6 and later), which the kernel detaches when their descriptors
/// close, so nothing stays attached when Tern exits, however it exits. On older kernels it falls back
/// to a clsact qdisc with a cls_bpf filter under Tern's own handle: that outlives the process, so it
/// is removed at start (a crashed predecessor's) and at stop.
public final class KernelOffload: @unchecked Sendable {
    /// How the program is attached: "tcx" (links) or "tc" (netlink filters).
    public let attachment: String
    public let interfaces: [String]
    let toPeer: Int32
    let toClient: Int32
    let budgets: Int32
    let stats: Int32
    private let bpf: OpaquePointer
    private let lock = Lock()
    private var links: [Int32]
    private var filters: [UInt32]
    private var unloaded = false

    /// The outcome of `start`: a loaded and attached offload, or why there is none.
    public enum Start {
        case active(KernelOffload)
        case unavailable(reason: String)
    }

    private init(bpf: OpaquePointer, attachment: String, interfaces: [String], links: [Int32], filters: [UInt32]) {
        self.bpf = bpf
        self.attachment = attachment
        self.interfaces = interfaces
        self.links = links
        self.filters = filters
        toPeer = tern_bpf_map_fd(bpf, TERN_MAP_TO_PEER)
        toClient = tern_bpf_map_fd(bpf, TERN_MAP_TO_CLIENT)
        budgets = tern_bpf_map_fd(bpf, TERN_MAP_BUDGETS)
        stats = tern_bpf_map_fd(bpf, TERN_MAP_STATS)
    }

    /// Loads the embedded program and attaches it. Never throws: where the kernel or the process's
    /// capabilities refuse (no CAP_BPF or CAP_NET_ADMIN, no BTF, a verifier rejection, an unknown
    /// interface), the reason comes back and Tern relays in user space.
    public static func start(interfaces wanted: [String]?) -> Start {
        guard let object = Data(base64Encoded: ternRelayBPFObjectBase64) else {
            return .unavailable(reason: "the embedded BPF object is damaged")
        }
        let all = Posix.interfaces()
        var chosen: [(name: String, index: UInt32)] = []
        if let wanted {
            for name in wanted {
                guard let i = all.first(where: { $0.name == name }) else {
                    return .unavailable(reason: "io.offloadInterfaces: no interface \(name)")
                }
                chosen.append((i.name, i.index))
            }
        } else {
            chosen = all.filter(\.up).map { ($0.name, $0.index) }
        }
        guard !chosen.isEmpty else { return .unavailable(reason: "no interface is up") }
        var error: Int32 = 0
        var log = [CChar](repeating: 0, count: 2048)
        let loaded = object.withUnsafeBytes { raw in
            tern_bpf_load(raw.baseAddress, raw.count, &error, &log, log.count)
        }
        guard let bpf = loaded else {
            let detail = String(cString: log).split(separator: "\n").suffix(3).joined(separator: " | ")
            return .unavailable(reason: "loading the BPF program: \(String(cString: strerror(-error)))"
                                + (detail.isEmpty ? "" : " (\(detail))"))
        }
        // A crashed predecessor's filters (the pre-6.6 path) go first; on TCX kernels there are none.
        for i in chosen { _ = tern_bpf_detach_tc(Int32(i.index)) }
        var links: [Int32] = []
        for i in chosen {
            let fd = tern_bpf_attach_tcx(bpf, Int32(i.index))
            if fd >= 0 {
                links.append(fd)
                continue
            }
            for l in links { Posix.closeLink(l) }
            links = []
            break
        }
        if links.count == chosen.count {
            return .active(KernelOffload(bpf: bpf, attachment: "tcx", interfaces: chosen.map(\.name), links: links, filters: []))
        }
        var filters: [UInt32] = []
        for i in chosen {
            let r = tern_bpf_attach_tc(bpf, Int32(i.index))
            if r < 0 {
                for f in filters { _ = tern_bpf_detach_tc(Int32(f)) }
                tern_bpf_close(bpf)
                return .unavailable(reason: "attaching at \(i.name)'s ingress: \(String(cString: strerror(-r)))")
            }
            filters.append(i.index)
        }
        return .active(KernelOffload(bpf: bpf, attachment: "tc", interfaces: chosen.map(\.name), links: [], filters: filters))
    }

    /// Detaches the program and unloads it with its maps. Idempotent.
    public func unload() {
        lock.withLock {
            guard !unloaded else { return }
            unloaded = true
            for l in links { Posix.closeLink(l) }
            for f in filters { _ = tern_bpf_detach_tc(Int32(f)) }
            links = []
            filters = []
            tern_bpf_close(bpf)
        }
    }

    deinit { unload() }

    public var isUnloaded: Bool { lock.withLock { unloaded } }

    /// The program's own counters (per-CPU, summed): what it relayed, and what it passed to user
    /// space or dropped, by reason.
    public func counters() -> [String: UInt64] {
        lock.withLock {
            guard !unloaded else { return [:] }
            let names: [(String, tern_offload_stat)] = [
                ("relayed_to_peer", TERN_STAT_RELAYED_TO_PEER), ("relayed_to_client", TERN_STAT_RELAYED_TO_CLIENT),
                ("passed_expired", TERN_STAT_PASSED_EXPIRED), ("passed_length", TERN_STAT_PASSED_LENGTH),
                ("passed_route", TERN_STAT_PASSED_ROUTE), ("dropped_bandwidth", TERN_STAT_DROPPED_BANDWIDTH),
            ]
            var out: [String: UInt64] = [:]
            for (name, index) in names { out[name] = Posix.bpfPerCPUSum(stats, index: index.rawValue) }
            return out
        }
    }
}
