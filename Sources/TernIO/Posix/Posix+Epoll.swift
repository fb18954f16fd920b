#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernShims

/// The worker-private epoll set of the `epoll` event loop: level-triggered EPOLLIN registrations
/// keyed by descriptor.
extension Posix {
    /// epoll_create1(EPOLL_CLOEXEC).
    static func epollCreate() throws(SystemError) -> Int32 {
        try must("epoll_create1") { tern_epoll_create() }
    }

    static func epollAdd(_ epfd: Int32, _ fd: Int32) throws(SystemError) {
        _ = try must("epoll_ctl(ADD)") { tern_epoll_add(epfd, fd) }
    }

    static func epollDelete(_ epfd: Int32, _ fd: Int32) throws(SystemError) {
        _ = try must("epoll_ctl(DEL)") { tern_epoll_del(epfd, fd) }
    }

    /// Waits up to `timeoutMicroseconds` (0: do not wait) and writes up to `max` ready descriptors
    /// into `ready`; returns how many. An interrupted wait is retried with the same timeout.
    @inline(__always)
    static func epollWait(_ epfd: Int32, ready: UnsafeMutablePointer<Int32>, max: Int32,
                          timeoutMicroseconds: Int) throws(SystemError) -> Int {
        switch try retrying("epoll_wait", { tern_epoll_wait_us(epfd, ready, max, timeoutMicroseconds) }) {
        case .done(let n): return Int(n)
        case .wouldBlock: return 0
        }
    }
}
