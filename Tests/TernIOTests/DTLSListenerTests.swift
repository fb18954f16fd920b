#if canImport(Glibc)
import Glibc
#endif
import Logging
import COpenSSL
import STUN
import TernCore
import Testing
@testable import TernIO

@Suite("DTLS listeners: cookie exchange, STUN over DTLS, old versions refused", .serialized)
struct DTLSListenerTests {
    func withDTLSServer(_ body: (Server, TransportAddress) throws -> Void) throws {
        let fixture = TLSFixture.shared
        var logger = Logger(label: "tern.test")
        logger.logLevel = .warning
        let server = Server(listeners: [ListenerConfig(transport: .dtls, address: v4)], workerCount: 2,
                            handlerConfiguration: HandlerConfiguration(),
                            dtls: try TLSServerContext.dtls(certificateChainPath: fixture.cert, privateKeyPath: fixture.key),
                            logger: logger)
        let bound = try server.start()
        defer { server.stop() }
        try body(server, bound[0].address)
    }

    @Test("A DTLS 1.2 client completes the handshake (with a cookie round trip) and gets a Binding answer")
    func binding() throws {
        try withDTLSServer { server, address in
            let socket = try TestSocket.connect(.udp, to: address)
            defer { socket.close() }
            let client = TLSTestClient(dtls: true, trust: TLSFixture.shared.cert)
            var flights = 0
            while !client.handshakeDone && flights < 20 {
                flights += 1
                _ = client.handshake()
                let out = client.output()
                if !out.isEmpty { socket.send(out) }
                if client.handshakeDone { break }
                guard let reply = socket.receive() else { break }
                client.feed(reply)
            }
            #expect(client.handshakeDone)
            let id = TransactionID.random()
            client.write(bindingRequest(id))
            socket.send(client.output())
            let encrypted = try #require(socket.receive())
            client.feed(encrypted)
            let plain = client.read().bytes
            let m = try Message.decode(plain)
            #expect(m.transactionID == id)
            #expect(m.first(.xorMappedAddress) == .xorMappedAddress(socket.localAddress))
        }
    }

    @Test("A reload gives new associations the new certificate; an established one keeps working")
    func reload() throws {
        let fixture = TLSFixture.shared
        try withDTLSServer { server, address in
            let oldSocket = try TestSocket.connect(.udp, to: address)
            defer { oldSocket.close() }
            let old = try #require(dtlsHandshake(oldSocket, trust: fixture.cert))
            try server.reloadDTLS(try TLSServerContext.dtls(certificateChainPath: fixture.otherCert, privateKeyPath: fixture.otherKey))
            let newSocket = try TestSocket.connect(.udp, to: address)
            defer { newSocket.close() }
            let fresh = try #require(dtlsHandshake(newSocket, trust: fixture.otherCert))
            #expect(dtlsBinding(fresh, newSocket))
            #expect(dtlsBinding(old, oldSocket))
            let staleSocket = try TestSocket.connect(.udp, to: address, timeoutMs: 500)
            defer { staleSocket.close() }
            #expect(dtlsHandshake(staleSocket, trust: fixture.cert) == nil)
        }
    }

    @Test("A DTLS 1.0 ClientHello gets a fatal protocol_version alert, and plain STUN is dropped")
    func refused() throws {
        try withDTLSServer { server, address in
            let socket = try TestSocket.connect(.udp, to: address, timeoutMs: 300)
            defer { socket.close() }
            let client = TLSTestClient(dtls: true, maxVersion: DTLS1_VERSION)
            _ = client.handshake()
            socket.send(client.output())
            #expect(socket.receive() == DTLSEndpoint.protocolVersionAlert)
            socket.send(bindingRequest())
            #expect(socket.receive() == nil)
            #expect(server.stats().handler.malformed >= 1)
        }
    }
}
