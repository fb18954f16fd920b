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
    /// The epoll set's own descriptor.
    let epoll: Socket
    private unowned let worker: Worker
    private var targets: [Int32: () -> Void] = [:]
    private var source: DispatchSourceRead?
    private let ready = UnsafeMutablePointer<Int32>.allocate(capacity: 64)
    let linger: Int
    let budgetNanos: UInt64 = 2_000_000

    init(worker: Worker, lingerMicroseconds: Int) throws(SystemError) {
        self.epoll = try SocketFactory.epollSet()
        self.worker = worker
        self.linger = lingerMicroseconds
    }

    deinit {
        // Never started, the socket closes itself when it goes; started, the source's cancel handler closed it.
        ready.deallocate()
    }

    private var started = false

    /// Starts the one Dispatch source; its cancel handler closes the epoll descriptor.
    func start() {
        guard !started else { return }
        started = true
        source = worker.makeReadSource(epoll, readable: { [unowned self] in self.fired() })
    }

    func releaseSpareCapacity() { targets.releaseSpareCapacity() }

    func stop() {
        source?.cancel()
        source = nil
    }

    /// Registers `socket`; `readable` runs on the worker's queue while it has data.
    func watch(_ socket: Socket, readable: @escaping () -> Void, cancelled: (() -> Void)?) throws(SystemError) -> ReadWatch {
        try Posix.epollAdd(epoll.fd, socket.fd)
        targets[socket.fd] = readable
        worker.closing.enter()
        return PollWatch(poller: self, socket: socket, cancelled: cancelled)
    }

    /// Unregisters and closes `fd` at once, so that its port is free for the very next request (a
    /// firing may go on serving datagrams for a while; a close deferred to the queue would wait for
    /// it). Safe because no socket cancels its own watch from inside its own read handler; a stale
    /// event for the number later in the same firing finds no target, or the socket that reused the
    /// number, which then just reads nothing.
    fileprivate func remove(_ socket: Socket, cancelled: (() -> Void)?) {
        try? Posix.epollDelete(epoll.fd, socket.fd)
        targets[socket.fd] = nil
        socket.close()
        cancelled?()
        worker.closing.leave()
    }

    private func fired() {
        let start = Clocks.monotonicNanos()
        let epfd = epoll.fd
        // A failed wait (it should not fail) counts as an empty one: the firing ends.
        var n = (try? Posix.epollWait(epfd, ready: ready, max: 64, timeoutMicroseconds: 0)) ?? 0
        var lingered = false
        while true {
            if n > 0 {
                lingered = false
                var i = 0
                while i < n {
                    targets[ready[i]]?()
                    i &+= 1
                }
                // One sendmmsg for what every relay socket of the round prepared for clients.
                worker.flushPendingToClients()
            } else if lingered || linger == 0 {
                return
            } else {
                lingered = true
            }
            if Clocks.monotonicNanos() &- start > budgetNanos { return }
            n = (try? Posix.epollWait(epfd, ready: ready, max: 64, timeoutMicroseconds: n > 0 ? 0 : linger)) ?? 0
        }
    }
}

private final class PollWatch: ReadWatch {
    private weak var poller: Poller?
    private var socket: Socket?
    private let cancelled: (() -> Void)?

    init(poller: Poller, socket: Socket, cancelled: (() -> Void)?) {
        self.poller = poller
        self.socket = socket
        self.cancelled = cancelled
    }

    func cancel() {
        guard let socket, let poller else { return }
        self.socket = nil
        poller.remove(socket, cancelled: cancelled)
    }
}

extension Worker {
    /// The read watch for a UDP socket: through the worker's poller with the `epoll` event loop,
    /// otherwise its own Dispatch source.
    func watchReadable(_ socket: Socket, readable: @escaping () -> Void, cancelled: (() -> Void)? = nil) -> ReadWatch {
        if let poller, let watch = try? poller.watch(socket, readable: readable, cancelled: cancelled) {
            return watch
        }
        return DispatchReadWatch(makeReadSource(socket, readable: readable, cancelled: cancelled))
    }
}
