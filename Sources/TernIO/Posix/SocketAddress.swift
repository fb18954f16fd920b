#if canImport(Glibc)
import Glibc
#endif
import STUN

/// A `sockaddr_storage` holding an IPv4 or IPv6 address, converted to and from the codec's
/// `TransportAddress` without allocation.
public struct TernSocketAddress {
    public var storage: sockaddr_storage

    public init(storage: sockaddr_storage) {
        self.storage = storage
    }

    public init(_ address: TransportAddress) {
        var storage = sockaddr_storage()
        switch address.ip {
        case .v4(let a):
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    sin.pointee.sin_family = sa_family_t(AF_INET)
                    sin.pointee.sin_port = address.port.bigEndian
                    sin.pointee.sin_addr.s_addr = a.bigEndian
                }
            }
        case .v6(let h, let l):
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                    sin6.pointee.sin6_port = address.port.bigEndian
                    var pair = (h.bigEndian, l.bigEndian)
                    withUnsafeBytes(of: &pair) { src in
                        withUnsafeMutableBytes(of: &sin6.pointee.sin6_addr) { dst in
                            dst.copyMemory(from: src)
                        }
                    }
                }
            }
        }
        self.storage = storage
    }

    public var isIPv6: Bool { Int32(storage.ss_family) == AF_INET6 }

    /// The address as the codec's value type. IPv4-mapped IPv6 (::ffff:a.b.c.d) stays IPv6 here:
    /// Tern binds IPv6 sockets with IPV6_V6ONLY, so it never receives them from dual-stack sockets.
    public var transportAddress: TransportAddress {
        var s = storage
        return withUnsafePointer(to: &s) { p -> TransportAddress in
            TernSocketAddress.transportAddress(p)
        }
    }

    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, RFC 4291 section 2.5.5.2) comes back as the
    /// IPv4 address it carries. A `[::]` socket without IPV6_V6ONLY (as systemd may pass one)
    /// carries IPv4 clients in that form; mapped here, an IPv4 client is the same client everywhere:
    /// limits, logs, XOR-MAPPED-ADDRESS, the peer policy. Nothing is lost: no IPv6 packet has a
    /// mapped source on the wire (Linux drops them, RFC 4291 section 2.5.5.2), and Linux sends to an
    /// AF_INET address, and takes IP_PKTINFO, on a dual-stack IPv6 socket.
    @inline(__always)
    static func transportAddress(_ p: UnsafePointer<sockaddr_storage>) -> TransportAddress {
        if Int32(p.pointee.ss_family) == AF_INET6 {
            return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var addr = sin6.pointee.sin6_addr
                let pair = withUnsafeBytes(of: &addr) { raw in
                    (raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                }
                let hi = UInt64(bigEndian: pair.0), lo = UInt64(bigEndian: pair.1)
                let port = UInt16(bigEndian: sin6.pointee.sin6_port)
                if hi == 0, lo >> 32 == 0x0000_FFFF {
                    return TransportAddress(ip: .v4(UInt32(truncatingIfNeeded: lo)), port: port)
                }
                return TransportAddress(ip: .v6(hi, lo), port: port)
            }
        }
        return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
            TransportAddress(ip: .v4(UInt32(bigEndian: sin.pointee.sin_addr.s_addr)),
                             port: UInt16(bigEndian: sin.pointee.sin_port))
        }
    }

    @inline(__always)
    static func write(_ address: TransportAddress, into p: UnsafeMutablePointer<sockaddr_storage>) -> socklen_t {
        p.pointee = TernSocketAddress(address).storage
        return TernSocketAddress.length(family: address.ip.family)
    }

    static func length(family: AddressFamily) -> socklen_t {
        family == .ipv6 ? socklen_t(MemoryLayout<sockaddr_in6>.size) : socklen_t(MemoryLayout<sockaddr_in>.size)
    }

    public var length: socklen_t {
        isIPv6 ? socklen_t(MemoryLayout<sockaddr_in6>.size) : socklen_t(MemoryLayout<sockaddr_in>.size)
    }

    public func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var s = storage
        let len = length
        return withUnsafePointer(to: &s) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, len) }
        }
    }
}
