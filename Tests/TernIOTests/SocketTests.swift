#if canImport(Glibc)
import Glibc
#endif
import STUN
import TernCore
import Testing
@testable import TernIO

@Suite("Owned sockets, the socket factory and relay handles")
struct SocketTests {
    let factory = SocketFactory(io: IOConfig())

    /// The inode behind a descriptor, or nil when it is not open. Tests run in parallel, so a closed
    /// number may be reused at once by another test: "closed" is "not open, or another inode".
    private func inode(_ fd: Int32) -> UInt? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        return UInt(st.st_ino)
    }

    @Test("A socket closes its descriptor exactly once, and reads -1 afterwards")
    func closesOnce() throws {
        let socket = try factory.relay(TransportAddress(ip: .loopbackV4, port: 0), dontFragment: false)
        #expect(socket.isOpen)
        let fd = socket.fd
        let before = try #require(inode(fd))
        socket.close()
        #expect(!socket.isOpen)
        #expect(socket.fd == -1)
        #expect(inode(fd) != before)
        socket.close()  // a second close does nothing (and cannot close a descriptor reused since)
        #expect(socket.fd == -1)
    }

    @Test("A socket dropped without close() (an error path) still closes its descriptor")
    func closesWhenDropped() throws {
        var fd: Int32 = -1
        var before: UInt?
        do {
            let socket = try factory.relay(TransportAddress(ip: .loopbackV4, port: 0), dontFragment: true)
            fd = socket.fd
            before = inode(fd)
        }
        #expect(before != nil)
        #expect(inode(fd) != before)
    }

    @Test("A refused RFC 6062 peer connect reads as failed, never as connected")
    func refusedConnect() throws {
        // A port nobody listens on: bound once to learn it, then closed.
        let probe = try factory.tcpRelayListener(TransportAddress(ip: .loopbackV4, port: 0))
        let deadPort = try probe.localAddress().port
        probe.close()
        let (socket, outcome) = try factory.peerConnection(from: TransportAddress(ip: .loopbackV4, port: 0),
                                                           to: TransportAddress(ip: .loopbackV4, port: deadPort))
        defer { socket.close() }
        if outcome == .inProgress {
            var pfd = pollfd(fd: socket.fd, events: Int16(POLLOUT), revents: 0)
            try #require(poll(&pfd, 1, 5000) == 1, "the connect did not finish")
        }
        let error = socket.connectError()
        #expect(error?.errno == ECONNREFUSED)
    }

    @Test("Relay handles are slot and generation: a freed slot's next handle differs, a stale one finds nothing")
    func relayHandles() throws {
        var table = RelayTable()
        let a = table.reserveHandle()
        let b = table.reserveHandle()
        try #require(a != nil && b != nil)
        guard let a, let b else { return }
        #expect(a != b)
        #expect(a.id & 0x8000_0000 == 0)
        table.unreserve(a)
        let c = table.reserveHandle()
        try #require(c != nil)
        guard let c else { return }
        #expect(c != a, "the reused slot has a new generation")
        #expect(c.id & RelayTable.slotMask == a.id & RelayTable.slotMask)
        #expect(table[a] == nil)
        #expect(table.udpDescriptor(a) == nil)
        #expect(table.count == 0)
        _ = b
    }

    @Test("Reserved relay sockets are held server-wide and given out once")
    func reservations() throws {
        let reserved = ReservedRelays()
        let socket = try factory.relay(TransportAddress(ip: .loopbackV4, port: 0), dontFragment: false)
        let handle = reserved.hold(socket)
        #expect(handle.id & 0x8000_0000 != 0)
        #expect(reserved.count == 1)
        let taken = try #require(reserved.take(handle))
        #expect(taken === socket)
        #expect(reserved.take(handle) == nil)
        taken.close()
    }

    @Test("Lock serialises concurrent increments")
    func lock() async {
        let counter = Locked(0)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask { for _ in 0..<1000 { counter.withLock { $0 += 1 } } }
            }
        }
        #expect(counter.current == 8000)
    }
}
