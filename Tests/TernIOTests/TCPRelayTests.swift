#if canImport(Glibc)
import Glibc
#endif
import STUN
import TernCore
import Testing
@testable import TernIO

/// A TCP peer: a listening socket on loopback with bounded waits.
struct TestTCPPeer {
    let fd: Int32
    let address: TransportAddress

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var tv = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let fd = self.fd
        guard TernSocketAddress(TransportAddress(ip: .loopbackV4, port: 0)).withSockAddr({ Glibc.bind(fd, $0, $1) }) == 0,
              listen(fd, 8) == 0 else { throw SystemError("bind/listen", errno: errno) }
        address = (try Posix.localAddress(fd)).transportAddress
    }

    /// The next connection, as a connected blocking socket; nil on timeout.
    func accept() -> TestSocket? {
        let c = Glibc.accept(fd, nil, nil)
        guard c >= 0 else { return nil }
        var tv = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return TestSocket(fd: c)
    }

    func close() { Glibc.close(fd) }
}

/// Connects a plain TCP socket to `to` (for a peer dialling a relayed address).
func dial(_ to: TransportAddress) throws -> TestSocket {
    try TestSocket.connect(.tcp, to: to, timeoutMs: 3000)
}

func connectionID(_ m: Message) -> UInt32? {
    if case .connectionID(let id)? = m.first(.connectionID) { return id }
    return nil
}

@Suite("RFC 6062 TCP relaying with the project's own client", .serialized)
struct TCPRelayTests {
    @Test("Connect, then ConnectionBind on a new connection: raw bytes both ways; the control connection's close ends it all")
    func activeConnect() throws {
        try withTurnServer { server, _ in
            let address = try #require(tcpAddress(server))
            var control: TurnTestClient? = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            let allocated = try #require(try control?.request(.allocate, [.requestedTransport(protocolNumber: 6)]))
            #expect(allocated.type.messageClass == .successResponse, "\(allocated)")
            let peer = try TestTCPPeer()
            defer { peer.close() }
            let connected = try #require(try control?.request(.connect, [.xorPeerAddress(peer.address)]))
            let id = try #require(connectionID(connected), "\(connected)")
            let peerSide = try #require(peer.accept())
            defer { peerSide.close() }
            // The peer sees the relayed transport address as the connection's source.
            let relay = try #require(relayedAddresses(allocated).first)
            var st = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = withUnsafeMutablePointer(to: &st) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(peerSide.fd, $0, &len) } }
            #expect(TernSocketAddress(storage: st).transportAddress == relay)
            // Bytes from the peer before the bind are buffered.
            peerSide.send(Array("early".utf8))
            let data = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            let bound = try data.request(.connectionBind, [.connectionID(id)])
            #expect(bound.type.messageClass == .successResponse, "\(bound)")
            #expect(data.socket.receiveExactly(5) == Array("early".utf8))
            data.socket.send(Array("hello peer".utf8))
            #expect(peerSide.receiveExactly(10) == Array("hello peer".utf8))
            let big = (0..<200_000).map { UInt8(truncatingIfNeeded: $0) }
            peerSide.send(big)
            #expect(data.socket.receiveExactly(big.count) == big)
            // A second ConnectionBind for the same id is refused.
            let again = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try again.request(.connectionBind, [.connectionID(id)]).errorCode?.code == 400)
            // Closing the control connection ends the allocation and its data connections.
            control = nil
            #expect(peerSide.peerClosed())
            #expect(data.socket.peerClosed())
        }
    }

    @Test("A peer connecting in needs a permission; then ConnectionAttempt and ConnectionBind join it")
    func passiveConnection() throws {
        try withTurnServer { server, _ in
            let address = try #require(tcpAddress(server))
            let control = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            let allocated = try control.request(.allocate, [.requestedTransport(protocolNumber: 6)])
            let relay = try #require(relayedAddresses(allocated).first)
            // No permission yet: the connection is closed at once.
            let refused = try dial(relay)
            #expect(refused.peerClosed())
            refused.close()
            #expect(try control.request(.createPermission, [.xorPeerAddress(TransportAddress(ip: .loopbackV4, port: 1))]).type.messageClass == .successResponse)
            let peer = try dial(relay)
            defer { peer.close() }
            let attempt = try #require(control.receiveOne().flatMap { try? Message.decode($0) })
            #expect(attempt.type == MessageType(method: .connectionAttempt, class: .indication))
            #expect(attempt.first(.xorPeerAddress) == .xorPeerAddress(peer.localAddress))
            let id = try #require(connectionID(attempt))
            let data = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try data.request(.connectionBind, [.connectionID(id)]).type.messageClass == .successResponse)
            peer.send([1, 2, 3])
            #expect(data.socket.receiveExactly(3) == [1, 2, 3])
            data.socket.send([4, 5])
            #expect(peer.receiveExactly(2) == [4, 5])
        }
    }

    @Test("Errors: TCP relaying over UDP 400, Connect on a UDP allocation 400, 403, 446, 447, unknown CONNECTION-ID 400, 441")
    func errors() throws {
        try withTurnServer { server, udpAddress in
            let address = try #require(tcpAddress(server))
            let overUDP = try TurnTestClient(server: udpAddress, username: "alice", password: "wonderland")
            #expect(try overUDP.request(.allocate, [.requestedTransport(protocolNumber: 6)]).errorCode?.code == 400)
            #expect(try overUDP.allocate().type.messageClass == .successResponse)
            #expect(try overUDP.request(.connect, [.xorPeerAddress(TransportAddress("127.0.0.1:9")!)]).errorCode?.code == 400)
            let control = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try control.request(.connect, [.xorPeerAddress(TransportAddress("127.0.0.1:9")!)]).errorCode?.code == 437)
            #expect(try control.request(.allocate, [.requestedTransport(protocolNumber: 6), .evenPort(reserve: false)]).errorCode?.code == 400)
            #expect(try control.request(.allocate, [.requestedTransport(protocolNumber: 6)]).type.messageClass == .successResponse)
            #expect(try control.request(.connect, []).errorCode?.code == 400)
            #expect(try control.request(.connect, [.xorPeerAddress(TransportAddress("10.0.0.1:80")!)]).errorCode?.code == 403)
            // A closed port: the connection is refused, 447.
            let closedPort = try TestTCPPeer()
            let target = closedPort.address
            closedPort.close()
            #expect(try control.request(.connect, [.xorPeerAddress(target)]).errorCode?.code == 447)
            let peer = try TestTCPPeer()
            defer { peer.close() }
            let first = try control.request(.connect, [.xorPeerAddress(peer.address)])
            let id = try #require(connectionID(first))
            #expect(try control.request(.connect, [.xorPeerAddress(peer.address)]).errorCode?.code == 446)
            let stranger = try TurnTestClient(server: address, username: "bob", password: "builder", transport: .tcp)
            #expect(try stranger.request(.connectionBind, [.connectionID(id)]).errorCode?.code == 441)
            let unknown = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try unknown.request(.connectionBind, [.connectionID(id &+ 1)]).errorCode?.code == 400)
        }
    }

    @Test("A peer connection nobody binds is closed after 30 s")
    func unboundTimeout() throws {
        let clock = testClock()
        try withTurnServer(clock: clock) { server, _ in
            let address = try #require(tcpAddress(server))
            let control = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            _ = try control.request(.allocate, [.requestedTransport(protocolNumber: 6)])
            let peer = try TestTCPPeer()
            defer { peer.close() }
            #expect(connectionID(try control.request(.connect, [.xorPeerAddress(peer.address)])) != nil)
            let peerSide = try #require(peer.accept())
            defer { peerSide.close() }
            clock.advance(by: 31); server.tick()
            #expect(peerSide.peerClosed())
        }
    }
}
