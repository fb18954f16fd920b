#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import STUN

/// What a client (`tern probe`) needs beyond the server's calls: waiting for a descriptor with a
/// timeout, and name resolution.
extension Posix {
    /// poll(2) for one descriptor: true when `events` are ready within `milliseconds`.
    public static func wait(_ fd: Int32, forWriting: Bool = false, milliseconds: Int) throws(SystemError) -> Bool {
        var p = pollfd(fd: fd, events: Int16(forWriting ? POLLOUT : POLLIN), revents: 0)
        let r = try retrying("poll") { Glibc.poll(&p, 1, Int32(clamping: milliseconds)) }
        guard case .done(let n) = r else { return false }
        return n > 0
    }

    /// The addresses `host` resolves to (getaddrinfo(3)), IPv4 first; an IP literal resolves to itself.
    public static func resolve(_ host: String) -> [IPAddress] {
        var literal = host
        if literal.hasPrefix("["), literal.hasSuffix("]") { literal = String(literal.dropFirst().dropLast()) }
        if let ip = IPAddress(literal) { return [ip] }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>? = nil
        guard getaddrinfo(literal, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(list) }
        var out: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            if let sa = entry.pointee.ai_addr, entry.pointee.ai_family == AF_INET || entry.pointee.ai_family == AF_INET6 {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(sa), count: Int(entry.pointee.ai_addrlen)))
                }
                let ip = withUnsafePointer(to: &storage) { TernSocketAddress.transportAddress($0) }.ip
                if !out.contains(ip) { out.append(ip) }
            }
            cursor = entry.pointee.ai_next
        }
        return out.filter { $0.family == .ipv4 } + out.filter { $0.family == .ipv6 }
    }
}

/// A client socket with timeouts, for `tern probe`: connected UDP or TCP to one server, or an
/// unconnected UDP socket. Blocking calls, each bounded by `timeoutMilliseconds`.
public final class ClientSocket {
    public let fd: Int32
    public let isStream: Bool
    public var timeoutMilliseconds: Int

    public enum Kind { case udp, tcp }

    /// A socket of `kind` connected to `server` (TCP: the handshake is waited for, bounded).
    public init(_ kind: Kind, to server: TransportAddress, timeoutMilliseconds: Int = 2000) throws(SystemError) {
        let domain = server.ip.family == .ipv6 ? AF_INET6 : AF_INET
        let type = kind == .udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
        fd = try Posix.socket(domain: domain, type: type | Int32(SOCK_CLOEXEC.rawValue))
        isStream = kind == .tcp
        self.timeoutMilliseconds = timeoutMilliseconds
        do throws(SystemError) {
            try Posix.setNonBlocking(fd)
            // Small requests and ChannelData go out at once (a probe measures round trips).
            if kind == .tcp { try Posix.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1) }
            if case .inProgress = try Posix.connect(fd, to: TernSocketAddress(server)) {
                guard try Posix.wait(fd, forWriting: true, milliseconds: timeoutMilliseconds) else {
                    throw SystemError("connect(\(server))", errno: ETIMEDOUT)
                }
                let e = try Posix.socketError(fd)
                if e != 0 { throw SystemError("connect(\(server))", errno: e) }
            }
        } catch {
            Posix.close(fd)
            throw error
        }
    }

    deinit { Posix.close(fd) }

    /// An unconnected UDP socket of `family` on an ephemeral port (RFC 5780 tests send from one
    /// local port to several server addresses).
    /// `local` binds a given address and port instead (discovery sends from a relay-range port).
    public init(unconnectedUDP family: AddressFamily, local: TransportAddress? = nil,
                timeoutMilliseconds: Int = 2000) throws(SystemError) {
        fd = try Posix.socket(domain: family == .ipv6 ? AF_INET6 : AF_INET, type: Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
        isStream = false
        self.timeoutMilliseconds = timeoutMilliseconds
        do throws(SystemError) {
            try Posix.setNonBlocking(fd)
            try Posix.bind(fd, TernSocketAddress(local ?? TransportAddress(ip: family == .ipv6 ? .anyV6 : .anyV4, port: 0)))
        } catch {
            Posix.close(fd)
            throw error
        }
    }

    public var localAddress: TransportAddress? { (try? Posix.localAddress(fd))?.transportAddress }

    /// One datagram to `destination` (unconnected UDP).
    @discardableResult
    public func send(_ bytes: [UInt8], to destination: TransportAddress) -> Bool {
        bytes.withUnsafeBytes { b in
            TernSocketAddress(destination).withSockAddr { sa, len in Posix.sendto(fd, b, to: sa, length: len) }
        }
    }

    /// The next datagram and who sent it, within `milliseconds`.
    public func receiveFrom(milliseconds: Int) -> (from: TransportAddress, bytes: [UInt8])? {
        guard (try? Posix.wait(fd, milliseconds: milliseconds)) == true else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = buffer.withUnsafeMutableBytes { b in
            withUnsafeMutablePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.recvfrom(fd, b.baseAddress, b.count, 0, $0, &length) }
            }
        }
        guard n >= 0 else { return nil }
        return (withUnsafePointer(to: &storage) { TernSocketAddress.transportAddress($0) }, Array(buffer[0..<n]))
    }

    /// Sends all of `bytes` (a stream may take several writes), bounded by the timeout.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let r = bytes.withUnsafeBytes { b in
                Result { () throws(SystemError) in try Posix.send(fd, UnsafeRawBufferPointer(rebasing: b[offset...])) }
            }
            switch r {
            case .success(.done(let n)):
                offset += n
                if !isStream { return true }
            case .success(.wouldBlock):
                guard (try? Posix.wait(fd, forWriting: true, milliseconds: timeoutMilliseconds)) == true else { return false }
            case .failure:
                return false
            }
        }
        return true
    }

    /// One read (a datagram, or what a stream has), waiting at most `milliseconds` (default: the
    /// timeout); nil on timeout or error, [] at the end of a stream.
    public func receive(max: Int = 65_536, milliseconds: Int? = nil) -> [UInt8]? {
        guard (try? Posix.wait(fd, milliseconds: milliseconds ?? timeoutMilliseconds)) == true else { return nil }
        var buffer = [UInt8](repeating: 0, count: max)
        let r = buffer.withUnsafeMutableBytes { b in Result { () throws(SystemError) in try Posix.read(fd, into: b) } }
        guard case .success(.done(let n)) = r else { return nil }
        return Array(buffer[0..<n])
    }
}
