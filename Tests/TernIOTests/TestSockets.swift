#if canImport(Glibc)
import Glibc
#endif
import STUN
@testable import TernIO

/// Blocking client sockets with receive timeouts, for talking to a server over real loopback.
/// Every wait is bounded: a missing answer is `nil`, never a hang.
struct TestSocket {
    let fd: Int32

    enum Kind { case udp, tcp }

    /// A socket connected to `server` (UDP "connected" sockets only accept datagrams from it), from
    /// `source` when given (another loopback address stands for another host).
    static func connect(_ kind: Kind, to server: TransportAddress, from source: IPAddress? = nil,
                        timeoutMs: Int = 2000) throws -> TestSocket {
        let domain = server.ip.family == .ipv6 ? AF_INET6 : AF_INET
        let type = kind == .udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
        let fd = socket(domain, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", errno: errno) }
        var tv = timeval(tv_sec: timeoutMs / 1000, tv_usec: (timeoutMs % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if let source {
            let b = TernSocketAddress(TransportAddress(ip: source, port: 0)).withSockAddr { Glibc.bind(fd, $0, $1) }
            guard b == 0 else {
                let e = errno
                Glibc.close(fd)
                throw SystemError("bind(\(source))", errno: e)
            }
        }
        let r = TernSocketAddress(server).withSockAddr { Glibc.connect(fd, $0, $1) }
        guard r == 0 else {
            let e = errno
            Glibc.close(fd)
            throw SystemError("connect(\(server))", errno: e)
        }
        return TestSocket(fd: fd)
    }

    var localAddress: TransportAddress {
        (try? Posix.localAddress(fd))?.transportAddress ?? TransportAddress(ip: .anyV4, port: 0)
    }

    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// One datagram (UDP) or whatever one read returns (TCP); nil on timeout; [] at end of stream.
    func receive(max: Int = 65_536) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: max)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, max, 0) }
        if n < 0 { return nil }
        return Array(buf[0..<n])
    }

    /// Reads exactly one STUN message from a stream, using its length field; nil on timeout or EOF.
    func receiveSTUNFromStream() -> [UInt8]? {
        guard let header = receiveExactly(20) else { return nil }
        let length = Int(header[2]) << 8 | Int(header[3])
        guard let body = receiveExactly(length) else { return nil }
        return header + body
    }

    func receiveExactly(_ count: Int) -> [UInt8]? {
        var out: [UInt8] = []
        while out.count < count {
            var buf = [UInt8](repeating: 0, count: count - out.count)
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - out.count, 0) }
            if n <= 0 { return nil }
            out += buf[0..<n]
        }
        return out
    }

    /// True when the peer closed the stream (read returns 0 or ECONNRESET) within the timeout.
    func peerClosed() -> Bool {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 4096, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    func close() { Glibc.close(fd) }
}

/// Counts this process's open descriptors (to prove the server gives back every one).
func openDescriptorCount() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var n = 0
    while readdir(dir) != nil { n += 1 }
    return n
}

/// A Binding request, optionally with FINGERPRINT and extra attributes.
func bindingRequest(_ id: TransactionID = .random(), attributes: [Attribute] = [], fingerprint: Bool = false) -> [UInt8] {
    Message(type: MessageType(method: .binding, class: .request), transactionID: id, attributes: attributes)
        .encode(fingerprint: fingerprint)
}

/// Polls `condition` every 10 ms for at most `seconds`: for state that settles asynchronously on a
/// worker queue (a cancel handler closing a descriptor). Not a way to let time pass.
func eventually(within seconds: Double = 3, _ condition: () -> Bool) -> Bool {
    let rounds = Int(seconds * 100)
    for _ in 0..<rounds {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}
