#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernShims

/// A failed system call: which call, and the errno it left.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public var call: String
    public var errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// The outcome of a non-blocking call: it did something, or the kernel had nothing for it right now.
public enum IOOutcome<T> {
    case done(T)
    case wouldBlock
}

/// Every system call Tern makes goes through here: EINTR is retried, EAGAIN/EWOULDBLOCK becomes
/// `.wouldBlock`, and errno is read at once, before anything else can overwrite it.
public enum Posix {
    @inline(__always)
    static func retrying<T: BinaryInteger>(_ call: String, _ body: () -> T) throws(SystemError) -> IOOutcome<T> {
        while true {
            let r = body()
            if r >= 0 { return .done(r) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            throw SystemError(call, errno: e)
        }
    }

    /// For calls where "would block" cannot happen or is itself an error.
    @inline(__always)
    static func must<T: BinaryInteger>(_ call: String, _ body: () -> T) throws(SystemError) -> T {
        switch try retrying(call, body) {
        case .done(let r): return r
        case .wouldBlock: throw SystemError(call, errno: EAGAIN)
        }
    }

    public static func socket(domain: Int32, type: Int32, protocol proto: Int32 = 0) throws(SystemError) -> Int32 {
        try must("socket") { Glibc.socket(domain, type | tern_sock_nonblock() | tern_sock_cloexec(), proto) }
    }

    public static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(SystemError) {
        var v = value
        _ = try must("setsockopt(\(level), \(name))") {
            setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
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

    /// read(2) into `buffer`; `.done(0)` is end of stream.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOOutcome<Int> {
        try retrying("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// send(2) with MSG_NOSIGNAL, so a peer that went away yields EPIPE instead of SIGPIPE.
    public static func send(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(SystemError) -> IOOutcome<Int> {
        try retrying("send") { Glibc.send(fd, buffer.baseAddress, buffer.count, tern_msg_nosignal()) }
    }

    public static func recvmmsg(_ fd: Int32, _ msgs: UnsafeMutablePointer<tern_mmsghdr>, count: Int) throws(SystemError) -> IOOutcome<Int> {
        let r = try retrying("recvmmsg") { tern_recvmmsg(fd, msgs, UInt32(count), 0) }
        switch r {
        case .done(let n): return .done(Int(n))
        case .wouldBlock: return .wouldBlock
        }
    }

    public static func sendmmsg(_ fd: Int32, _ msgs: UnsafeMutablePointer<tern_mmsghdr>, count: Int) throws(SystemError) -> IOOutcome<Int> {
        let r = try retrying("sendmmsg") { tern_sendmmsg(fd, msgs, UInt32(count), tern_msg_nosignal()) }
        switch r {
        case .done(let n): return .done(Int(n))
        case .wouldBlock: return .wouldBlock
        }
    }

    /// sendto(2) of one datagram; false when it was not sent (buffer full, unreachable, refused).
    @inline(__always)
    public static func sendto(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, to address: UnsafePointer<sockaddr>,
                              length: socklen_t) -> Bool {
        while true {
            let r = Glibc.sendto(fd, bytes.baseAddress, bytes.count, tern_msg_nosignal(), address, length)
            if r >= 0 { return true }
            if Glibc.errno == EINTR { continue }
            return false
        }
    }

    /// Closes a descriptor. Only ever called from a Dispatch source's cancel handler (or before any
    /// source was made for the descriptor). EINTR on close is not retried: on Linux the fd is gone.
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Ignore SIGPIPE process-wide (belt and braces next to MSG_NOSIGNAL).
    public static func ignoreSIGPIPE() {
        signal(SIGPIPE, SIG_IGN)
    }
}
