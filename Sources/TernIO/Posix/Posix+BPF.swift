#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernBPF
import STUN

/// The kernel fast path's system calls: the bpf(2) map operations (through libbpf, in CTernBPF) and
/// the interface lookups the control plane needs. libbpf returns negative errnos; these turn them
/// into `SystemError`s like every other wrapper here.
extension Posix {
    static func bpfUpdate(_ map: Int32, key: UnsafeRawPointer, value: UnsafeRawPointer) throws(SystemError) {
        let r = tern_bpf_update(map, key, value)
        if r < 0 { throw SystemError("bpf(BPF_MAP_UPDATE_ELEM)", errno: -r) }
    }

    /// False when there was no such key.
    @discardableResult
    static func bpfDelete(_ map: Int32, key: UnsafeRawPointer) -> Bool {
        tern_bpf_delete(map, key) == 0
    }

    /// False when there is no such key (or the lookup failed).
    static func bpfLookup(_ map: Int32, key: UnsafeRawPointer, value: UnsafeMutableRawPointer) -> Bool {
        tern_bpf_lookup(map, key, value) == 0
    }

    static func bpfPerCPUSum(_ map: Int32, index: UInt32) -> UInt64 {
        var sum: UInt64 = 0
        return tern_bpf_percpu_sum(map, index, &sum) == 0 ? sum : 0
    }

    /// A descriptor that is not a socket and has no Dispatch source (a BPF link): closed directly.
    static func closeLink(_ fd: Int32) { close(fd) }

    /// The host's interfaces, by name with their index, and whether each is up (getifaddrs(3)).
    static func interfaces() -> [(name: String, index: UInt32, up: Bool)] {
        var out: [(name: String, index: UInt32, up: Bool)] = []
        forEachInterfaceEntry { cName, flags, _ in
            let name = String(cString: cName)
            guard !out.contains(where: { $0.name == name }) else { return }
            let index = if_nametoindex(cName)
            if index != 0 { out.append((name, index, flags & UInt32(IFF_UP) != 0)) }
        }
        return out
    }

    /// The index of the interface that holds the IPv4 address `ip`, if one does.
    static func interfaceIndex(holding ip: IPAddress) -> UInt32? {
        var found: UInt32? = nil
        forEachInterfaceEntry { cName, _, address in
            guard found == nil, ip.family == .ipv4, address == ip else { return }
            let index = if_nametoindex(cName)
            found = index == 0 ? nil : index
        }
        return found
    }

    /// The local address the kernel's routing would send from towards `ip`: a UDP socket connected to
    /// it (which sends nothing) and getsockname(2).
    static func sourceAddress(towards ip: IPAddress) -> IPAddress? {
        guard let fd = try? socket(domain: ip.family == .ipv4 ? AF_INET : AF_INET6, type: Int32(SOCK_DGRAM.rawValue)) else { return nil }
        defer { close(fd) }
        guard (try? connect(fd, to: TernSocketAddress(TransportAddress(ip: ip, port: 9)))) != nil,
              let local = try? localAddress(fd) else { return nil }
        return local.transportAddress.ip
    }
}
