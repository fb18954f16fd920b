#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernShims
import STUN

/// The outcome of a non-blocking connect(2).
enum ConnectOutcome: Equatable {
    case connected
    /// EINPROGRESS: the result comes later, when the socket turns writable (read it with `socketError`).
    case inProgress
}

/// Creating, configuring and connecting sockets. `SocketFactory` is the only caller that creates
/// sockets; everything else uses these through a `Socket`.
extension Posix {
    public static func socket(domain: Int32, type: Int32, protocol proto: Int32 = 0) throws(SystemError) -> Int32 {
        try must("socket") { Glibc.socket(domain, type | tern_sock_nonblock() | tern_sock_cloexec(), proto) }
    }

    public static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(SystemError) {
        var v = value
        _ = try must("setsockopt(\(level), \(name))") {
            setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// An integer socket option (getsockopt(2)).
    static func option(_ fd: Int32, _ level: Int32, _ name: Int32) throws(SystemError) -> Int32 {
        var v: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        _ = try must("getsockopt(\(level), \(name))") { getsockopt(fd, level, name, &v, &len) }
        return v
    }

    /// SO_TYPE: SOCK_DGRAM or SOCK_STREAM.
    static func socketType(_ fd: Int32) throws(SystemError) -> Int32 {
        try option(fd, SOL_SOCKET, SO_TYPE)
    }

    /// SO_ERROR: the pending error of a socket (the outcome of a non-blocking connect), 0 for none.
    /// Throws when the call itself fails, which a caller must not read as "connected".
    static func socketError(_ fd: Int32) throws(SystemError) -> Int32 {
        try option(fd, SOL_SOCKET, SO_ERROR)
    }

    /// Sets O_NONBLOCK (fcntl F_GETFL, then F_SETFL), checking both calls.
    static func setNonBlocking(_ fd: Int32) throws(SystemError) {
        let flags = try must("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        guard flags & O_NONBLOCK == 0 else { return }
        _ = try must("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// IP_PKTINFO (IPv4) or IPV6_RECVPKTINFO (IPv6): a wildcard socket learns each datagram's local address.
    static func enablePacketInfo(_ fd: Int32, ipv6: Bool) throws(SystemError) {
        _ = try must("setsockopt(pktinfo)") { tern_enable_pktinfo(fd, ipv6 ? 1 : 0) }
    }

    /// Don't-fragment on a UDP socket (RFC 8656 section 14.8, DONT-FRAGMENT).
    static func setDontFragment(_ fd: Int32, ipv6: Bool) throws(SystemError) {
        _ = try must("setsockopt(dont fragment)") { tern_set_dont_fragment(fd, ipv6 ? 1 : 0) }
    }

    /// SO_RCVBUF/SO_SNDBUF (the *FORCE variants first). Best effort: the kernel caps what it grants,
    /// and a smaller buffer is no reason to fail, so the outcome is not reported.
    static func setBufferSizes(_ fd: Int32, receive: Int, send: Int) {
        guard receive > 0 || send > 0 else { return }
        _ = try? must("setsockopt(buffer sizes)") {
            tern_set_buffer_sizes(fd, Int32(clamping: receive), Int32(clamping: send))
        }
    }

    public static func bind(_ fd: Int32, _ address: TernSocketAddress) throws(SystemError) {
        _ = try must("bind(\(address.transportAddress))") {
            address.withSockAddr { Glibc.bind(fd, $0, $1) }
        }
    }

    public static func listen(_ fd: Int32, backlog: Int32) throws(SystemError) {
        _ = try must("listen") { Glibc.listen(fd, backlog) }
    }

    /// A non-blocking connect(2): `.inProgress` for EINPROGRESS (the usual case), an error otherwise.
    static func connect(_ fd: Int32, to address: TernSocketAddress) throws(SystemError) -> ConnectOutcome {
        while true {
            let r = address.withSockAddr { Glibc.connect(fd, $0, $1) }
            if r == 0 { return .connected }
            let e = Glibc.errno
            if e == EINTR { continue }  // the connection goes on in the background, as with EINPROGRESS
            if e == EINPROGRESS { return .inProgress }
            throw SystemError("connect(\(address.transportAddress))", errno: e)
        }
    }

    public static func localAddress(_ fd: Int32) throws(SystemError) -> TernSocketAddress {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try must("getsockname") {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
            }
        }
        return TernSocketAddress(storage: storage)
    }

    /// accept4 with SOCK_NONBLOCK|SOCK_CLOEXEC; `.wouldBlock` when the backlog is empty.
    /// ECONNABORTED (the peer gave up while queued) is reported as a retryable error by the caller.
    public static func accept(_ fd: Int32) throws(SystemError) -> IOOutcome<(Int32, TernSocketAddress)> {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = try retrying("accept4") {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { tern_accept_nonblocking(fd, $0, &len) }
            }
        }
        switch r {
        case .wouldBlock: return .wouldBlock
        case .done(let cfd): return .done((cfd, TernSocketAddress(storage: storage)))
        }
    }

    /// dup(2) with close-on-exec (F_DUPFD_CLOEXEC).
    static func duplicate(_ fd: Int32) throws(SystemError) -> Int32 {
        try must("fcntl(F_DUPFD_CLOEXEC)") { fcntl(fd, F_DUPFD_CLOEXEC, 0) }
    }
}

extension Posix {
    /// Every entry of getifaddrs(3): the interface's name, its flags, and its IPv4 or IPv6 address
    /// (nil for other families, such as the AF_PACKET entry each interface has). Nothing if it fails.
    static func forEachInterfaceEntry(_ body: (_ name: UnsafePointer<CChar>, _ flags: UInt32, _ ip: IPAddress?) -> Void) {
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&list) == 0, let first = list else { return }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            var ip: IPAddress? = nil
            if let sa = entry.pointee.ifa_addr {
                let family = Int32(sa.pointee.sa_family)
                if family == AF_INET || family == AF_INET6 {
                    var storage = sockaddr_storage()
                    let length = family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
                    withUnsafeMutableBytes(of: &storage) { dst in
                        dst.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(sa), count: length))
                    }
                    ip = withUnsafePointer(to: &storage) { TernSocketAddress.transportAddress($0) }.ip
                }
            }
            body(entry.pointee.ifa_name, entry.pointee.ifa_flags, ip)
            cursor = entry.pointee.ifa_next
        }
    }

    /// The IPv4 and IPv6 addresses of this host's interfaces (getifaddrs(3)); empty if it fails.
    public static func interfaceAddresses() -> [IPAddress] {
        var out: [IPAddress] = []
        forEachInterfaceEntry { _, _, ip in
            if let ip, !out.contains(ip) { out.append(ip) }
        }
        return out
    }
}
