#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import Dispatch

/// Something that watches a descriptor for reading and can stop doing so; cancelling closes the
/// descriptor (a Dispatch source in its cancel handler, the poller at once). Called on the worker's queue.
protocol ReadWatch: AnyObject {
    func cancel()
}

/// A plain Dispatch read source as a `ReadWatch`.
final class DispatchReadWatch: ReadWatch {
    private var source: DispatchSourceRead?
    init(_ source: DispatchSourceRead) { self.source = source }
    func cancel() {
        source?.cancel()
        source = nil
    }
}

/// The `epoll` event loop of one worker: its UDP sockets in a private epoll set, watched by a single
/// DispatchSourceRead on the epoll descriptor.
///
/// On Linux each firing of a Dispatch source costs about 8 extra system calls and 3 context switches
/// (libdispatch's manager thread re-arms every source with EPOLLONESHOT). Here one firing serves every ready socket of the worker, then
/// polls again; only when nothing has arrived for `linger` microseconds does it hand the thread back
/// to Dispatch. Under load the worker thus runs like a plain epoll loop, at rest it costs nothing. A
/// firing never runs longer than `budget`, so timers and the stream sources on the same queue wait
/// at most that long.
final class Poller {
    let epfd: Int32
    private unowned let worker: Worker
    private var targets: [Int32: () -> Void] = [:]
    private var source: DispatchSourceRead?
    private let ready = UnsafeMutablePointer<Int32>.allocate(capacity: 64)
    let linger: Int
    let budgetNanos: UInt64 = 2_000_000

    init(worker: Worker, lingerMicroseconds: Int) throws {
        let fd = tern_epoll_create()
        guard fd >= 0 else { throw SystemError("epoll_create1", errno: errno) }
        self.epfd = fd
        self.worker = worker
        self.linger = lingerMicroseconds
    }

    deinit {
        ready.deallocate()
        // Never started: no source owns the descriptor.
        if !started { Posix.close(epfd) }
    }

    private var started = false

    /// Starts the one Dispatch source; its cancel handler closes the epoll descriptor.
    func start() {
        guard !started else { return }
        started = true
        source = worker.makeReadSource(fd: epfd, readable: { [unowned self] in self.fired() })
    }

    func releaseSpareCapacity() { targets.releaseSpareCapacity() }

    func stop() {
        source?.cancel()
        source = nil
    }

    /// Registers `fd`; `readable` runs on the worker's queue while it has data.
    func watch(fd: Int32, readable: @escaping () -> Void, cancelled: (() -> Void)?) throws -> ReadWatch {
        guard tern_epoll_add(epfd, fd) == 0 else { throw SystemError("epoll_ctl(ADD)", errno: errno) }
        targets[fd] = readable
        worker.closing.enter()
        return PollWatch(poller: self, fd: fd, cancelled: cancelled)
    }

    /// Unregisters and closes `fd` at once, so that its port is free for the very next request (a
    /// firing may go on serving datagrams for a while; a close deferred to the queue would wait for
    /// it). Safe because no socket cancels its own watch from inside its own read handler; a stale
    /// event for the number later in the same firing finds no target, or the socket that reused the
    /// number, which then just reads nothing.
    fileprivate func remove(_ fd: Int32, cancelled: (() -> Void)?) {
        _ = tern_epoll_del(epfd, fd)
        targets[fd] = nil
        Posix.close(fd)
        cancelled?()
        worker.closing.leave()
    }

    private func fired() {
        let start = Clocks.monotonicNanos()
        var n = Int(tern_epoll_wait_us(epfd, ready, 64, 0))
        var lingered = false
        while true {
            if n > 0 {
                lingered = false
                var i = 0
                while i < n {
                    targets[ready[i]]?()
                    i &+= 1
                }
            } else if lingered || linger == 0 {
                return
            } else {
                lingered = true
            }
            if Clocks.monotonicNanos() &- start > budgetNanos { return }
            n = Int(tern_epoll_wait_us(epfd, ready, 64, n > 0 ? 0 : linger))
        }
    }
}

private final class PollWatch: ReadWatch {
    private weak var poller: Poller?
    private var fd: Int32
    private let cancelled: (() -> Void)?

    init(poller: Poller, fd: Int32, cancelled: (() -> Void)?) {
        self.poller = poller
        self.fd = fd
        self.cancelled = cancelled
    }

    func cancel() {
        guard fd >= 0, let poller else { return }
        poller.remove(fd, cancelled: cancelled)
        fd = -1
    }
}

extension Worker {
    /// The read watch for a UDP socket: through the worker's poller with the `epoll` event loop,
    /// otherwise its own Dispatch source.
    func watchReadable(fd: Int32, readable: @escaping () -> Void, cancelled: (() -> Void)? = nil) -> ReadWatch {
        if let poller, let watch = try? poller.watch(fd: fd, readable: readable, cancelled: cancelled) {
            return watch
        }
        return DispatchReadWatch(makeReadSource(fd: fd, readable: readable, cancelled: cancelled))
    }
}
