#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import STUN

/// One open descriptor, owned: it is closed exactly once, by `close()` or, for a socket dropped on
/// an error path before anything watched it, when the object goes away. After the close `fd` reads
/// -1, so a late send or read fails with EBADF instead of reaching whatever descriptor the kernel
/// handed out next under the old number.
///
/// Habit 4: a descriptor watched by a Dispatch source is closed only in the source's cancel handler,
/// which holds the socket until then (`Worker.makeReadSource`). Sockets are made by `SocketFactory`
/// only, and used on one worker queue at a time (they move between queues only when handed over).
final class Socket: @unchecked Sendable, CustomStringConvertible {
    /// The descriptor, or -1 once closed.
    private(set) var fd: Int32

    /// Takes ownership of `fd`; from here on only this object closes it.
    init(owning fd: Int32) {
        precondition(fd >= 0, "a socket owns an open descriptor")
        self.fd = fd
    }

    var isOpen: Bool { fd >= 0 }

    /// Closes the descriptor; a second call does nothing.
    func close() {
        guard fd >= 0 else { return }
        let fd = self.fd
        self.fd = -1
        Posix.close(fd)
    }

    deinit {
        if fd >= 0 { Posix.close(fd) }
    }

    /// The address the socket is bound to (getsockname).
    func localAddress() throws(SystemError) -> TransportAddress {
        try Posix.localAddress(fd).transportAddress
    }

    /// accept4: a new connection as a socket of its own, or `.wouldBlock` when the backlog is empty.
    func accept() throws(SystemError) -> IOOutcome<(Socket, TransportAddress)> {
        switch try Posix.accept(fd) {
        case .wouldBlock: return .wouldBlock
        case .done(let (cfd, peer)): return .done((Socket(owning: cfd), peer.transportAddress))
        }
    }

    /// A second descriptor for the same open socket (a connection handed over to another worker).
    func duplicate() throws(SystemError) -> Socket {
        Socket(owning: try Posix.duplicate(fd))
    }

    /// The outcome of a non-blocking connect once the socket is writable: nil when connected, else
    /// the error. A failed SO_ERROR read is an error too, never "connected".
    func connectError() -> SystemError? {
        do {
            let e = try Posix.socketError(fd)
            return e == 0 ? nil : SystemError("connect", errno: e)
        } catch {
            return error
        }
    }

    var description: String { fd >= 0 ? "socket \(fd)" : "closed socket" }
}
