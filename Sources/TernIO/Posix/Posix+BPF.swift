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
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(list) }
        var out: [(name: String, index: UInt32, up: Bool)] = []
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            let name = String(cString: entry.pointee.ifa_name)
            if !out.contains(where: { $0.name == name }) {
                let index = if_nametoindex(entry.pointee.ifa_name)
                if index != 0 { out.append((name, index, entry.pointee.ifa_flags & UInt32(IFF_UP) != 0)) }
            }
            cursor = entry.pointee.ifa_next
        }
        return out
    }

    /// The index of the interface that holds `ip`, if one does.
    static func interfaceIndex(holding ip: IPAddress) -> UInt32? {
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            if let sa = entry.pointee.ifa_addr, Int32(sa.pointee.sa_family) == AF_INET {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(sa), count: MemoryLayout<sockaddr_in>.size))
                }
                if withUnsafePointer(to: &storage, { TernSocketAddress.transportAddress($0) }).ip == ip {
                    let index = if_nametoindex(entry.pointee.ifa_name)
                    return index == 0 ? nil : index
                }
            }
            cursor = entry.pointee.ifa_next
        }
        return nil
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
