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
/// `.wouldBlock`, and errno is read at once, before anything else can overwrite it. Nothing else in
/// TernIO calls the C library's socket, descriptor or epoll functions directly. The calls are grouped
/// by subject: Posix+Socket (creating and configuring sockets), Posix+IO (reading and sending),
/// Posix+Epoll (the `epoll` event loop).
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

    /// Closes a descriptor. Called by `Socket.close()` (and the poller for its own epoll set) only:
    /// from a Dispatch source's cancel handler, or before any source was made for the descriptor.
    /// EINTR on close is not retried: on Linux the descriptor is gone either way.
    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Gives freed heap memory back to the system (glibc malloc_trim(0)); after mass expiry.
    static func releaseFreeHeap() {
        _ = tern_malloc_trim()
    }

    /// Ignore SIGPIPE process-wide (belt and braces next to MSG_NOSIGNAL).
    public static func ignoreSIGPIPE() {
        signal(SIGPIPE, SIG_IGN)
    }
}
