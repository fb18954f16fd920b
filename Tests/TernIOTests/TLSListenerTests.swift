#if canImport(Glibc)
import Glibc
#endif
import STUN
import TernCore
import Testing
@testable import TernIO

@Suite("TURN over TLS listeners (turns:), certificate reload", .serialized)
struct TLSListenerTests {
    func tlsAddress(_ server: Server) -> TransportAddress? {
        server.bound.first { $0.transport == .tls }?.address
    }

    @Test("Binding and a relaying allocation over TLS; a reload serves new connections the new certificate while the old allocation keeps relaying")
    func relayAndReload() throws {
        let fixture = TLSFixture.shared
        let holder = TLSContextHolder(try fixture.serverContext())
        try withTurnServer(tls: holder) { server, _ in
            let address = try #require(tlsAddress(server))
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            client.tls = try TLSStream(socket: client.socket, trust: fixture.cert)
            #expect(client.tls?.alpn == "stun.turn")
            let subjectA = client.tls?.peerSubject
            // STUN Binding over TLS.
            let binding = try client.exchange(bindingRequest())
            #expect(binding.first(.xorMappedAddress) == .xorMappedAddress(client.socket.localAddress))
            // A UDP relay for a TLS client.
            let relay = try #require(relayedAddresses(try client.allocate()).first)
            let peer = try TestPeer()
            defer { peer.close() }
            #expect(try client.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(peer.address)]).type.messageClass == .successResponse)
            client.sendChannelData(0x4000, [1, 2, 3])
            #expect(peer.receive()?.data == [1, 2, 3])
            peer.send([4, 5], to: relay)
            #expect(client.receiveRelayed()?.data == [4, 5])

            // Reload with certificate B: new connections get it...
            holder.replace(with: try TLSServerContext(certificateChainPath: fixture.otherCert, privateKeyPath: fixture.otherKey))
            let fresh = try TestSocket.connect(.tcp, to: address)
            defer { fresh.close() }
            let freshTLS = try TLSStream(socket: fresh, trust: fixture.otherCert)
            #expect(freshTLS.peerSubject != nil)
            // ...and the established allocation keeps relaying over its original session.
            client.sendChannelData(0x4000, [6])
            #expect(peer.receive()?.data == [6])
            peer.send([7], to: relay)
            #expect(client.receiveRelayed()?.data == [7])
            #expect(client.tls?.peerSubject == subjectA)
            // A client that trusts only the old certificate cannot complete a handshake any more.
            let stale = try TestSocket.connect(.tcp, to: address)
            defer { stale.close() }
            #expect(throws: TestFailure.self) { _ = try TLSStream(socket: stale, trust: fixture.cert) }
        }
    }

    @Test("Bytes that are not TLS close the connection; a stalled handshake is cut off")
    func hostile() throws {
        let fixture = TLSFixture.shared
        let holder = TLSContextHolder(try fixture.serverContext(), handshakeTimeout: 10)
        let clock = testClock()
        try withTurnServer(tls: holder, clock: clock) { server, _ in
            let address = try #require(tlsAddress(server))
            let garbage = try TestSocket.connect(.tcp, to: address)
            garbage.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            #expect(garbage.peerClosed())
            garbage.close()
            let silent = try TestSocket.connect(.tcp, to: address)
            defer { silent.close() }
            // The accept happens on a worker queue: wait (bounded) until the server holds it.
            var held = 0
            for _ in 0..<300 where held == 0 {
                held = server.stats().connections
                if held == 0 { usleep(10_000) }
            }
            clock.advance(by: 9); server.tick()
            #expect(server.stats().io.tlsHandshakeTimeouts == 0)
            clock.advance(by: 11); server.tick()
            #expect(silent.peerClosed())
            #expect(server.stats().io.tlsHandshakeTimeouts >= 1)
        }
    }
}
