import COpenSSL
import Foundation
import Testing
@testable import TernIO

@Suite("TLS engine over memory BIOs")
struct TLSTests {
    let fixture = TLSFixture.shared

    // MARK: Handshakes

    @Test func tls13HandshakeALPNAndDataBothWays() throws {
        let server = try TLSSession(context: try fixture.serverContext())
        let client = TLSTestClient(alpn: ["stun.turn"], trust: fixture.cert)
        var plaintext: [UInt8] = []
        let progress = try pump(client, server, serverPlaintext: &plaintext)
        #expect(progress.contains(.handshakeDone))
        #expect(server.handshakeComplete)
        #expect(client.handshakeDone)
        #expect(client.verifyResult == Int(X509_V_OK))
        #expect(server.protocolVersion == "TLSv1.3")
        #expect(server.negotiatedALPN == "stun.turn")
        #expect(client.alpn == "stun.turn")

        // Client → server: a STUN Binding request.
        client.write(stunBindingRequest)
        let p = try server.receive(client.output(), plaintext: &plaintext)
        #expect(p == .data)
        #expect(plaintext == stunBindingRequest)

        // Server → client.
        let answer: [UInt8] = [0x01, 0x01, 0x00, 0x00] + stunBindingRequest[4...]
        try server.send(answer)
        #expect(server.pendingOutput > 0)
        var wire: [UInt8] = []
        server.takeOutput(into: &wire)
        #expect(server.pendingOutput == 0)
        client.feed(wire)
        #expect(client.read().bytes == answer)
    }

    @Test func tls12WhenClientMaxIs12() throws {
        let server = try TLSSession(context: try fixture.serverContext())
        let client = TLSTestClient(maxVersion: TLS1_2_VERSION, alpn: ["stun.turn"], trust: fixture.cert)
        var plaintext: [UInt8] = []
        _ = try pump(client, server, serverPlaintext: &plaintext)
        #expect(server.handshakeComplete)
        #expect(server.protocolVersion == "TLSv1.2")
        #expect(server.cipherName == "ECDHE-ECDSA-AES128-GCM-SHA256")
        #expect(server.negotiatedALPN == "stun.turn")
        client.write(stunBindingRequest)
        #expect(try server.receive(client.output(), plaintext: &plaintext) == .data)
        #expect(plaintext == stunBindingRequest)
    }

    @Test func tls11ClientIsRefused() throws {
        let server = try TLSSession(context: try fixture.serverContext())
        let client = TLSTestClient(minVersion: TLS1_VERSION, maxVersion: TLS1_1_VERSION, lowSecurity: true)
        client.handshake()
        let hello = client.output()
        #expect(!hello.isEmpty, "the TLS 1.1 client must really send a ClientHello")
        var plaintext: [UInt8] = []
        let error = #expect(throws: TLSError.self) { try server.receive(hello, plaintext: &plaintext) }
        #expect(error?.kind == .handshakeFailed)
        #expect(error?.description.contains("unsupported protocol") == true, "\(String(describing: error))")
        #expect(!server.handshakeComplete)
        // A protocol_version alert waits for the peer.
        var alert: [UInt8] = []
        server.takeOutput(into: &alert)
        #expect(alert.first == 21)
        // The session stays dead.
        #expect(throws: TLSError.self) { try server.receive([0x16], plaintext: &plaintext) }
    }

    @Test(arguments: [
        (["stun.turn"], "stun.turn"),
        (["h2", "stun.turn"], "stun.turn"),
        (["stun.nat-discovery", "stun.turn"], "stun.turn"),
        (["stun.nat-discovery"], "stun.nat-discovery"),
        (["h2", "http/1.1"], nil),
        ([], nil),
    ] as [([String], String?)])
    func alpnSelection(offered: [String], expected: String?) throws {
        let server = try TLSSession(context: try fixture.serverContext())
        let client = TLSTestClient(alpn: offered)
        var plaintext: [UInt8] = []
        _ = try pump(client, server, serverPlaintext: &plaintext)
        #expect(server.handshakeComplete, "no overlap still completes the handshake, without ALPN")
        #expect(server.negotiatedALPN == expected)
        #expect(client.alpn == expected)
    }

    // MARK: Close

    @Test func peerCloseNotifyThenOurs() throws {
        let server = try TLSSession(context: try fixture.serverContext())
        let client = TLSTestClient()
        var plaintext: [UInt8] = []
        _ = try pump(client, server, serverPlaintext: &plaintext)
        #expect(server.handshakeComplete)
        client.write(stunBindingRequest)
        client.shutdown()
        // Data and close_notify in one read: the data is delivered, the result is .closed.
        #expect(try server.receive(client.output(), plaintext: &plaintext) == .closed)
        #expect(plaintext == stunBindingRequest)
        #expect(try server.receive([], plaintext: &plaintext) == .closed)
        #expect(throws: TLSError.self) { try server.send(stunBindingRequest) }
        server.shutdown()
        server.shutdown()   // idempotent
        var wire: [UInt8] = []
        server.takeOutput(into: &wire)
        #expect(!wire.isEmpty)
        client.feed(wire)
        #expect(client.read().closed)
    }

    @Test func sendBeforeHandshakeIsAUsageError() throws {
        let server = try TLSSession(context: try fixture.serverContext())
        let error = #expect(throws: TLSError.self) { try server.send(stunBindingRequest) }
        #expect(error?.kind == .invalidState)
        server.shutdown()   // no-op before the handshake
        #expect(server.pendingOutput == 0)
        #expect(server.protocolVersion == nil)
        #expect(server.negotiatedALPN == nil)
    }

    // MARK: Hostile input

    @Test func garbageIsAnErrorNotACrash() throws {
        let server = try TLSSession(context: try fixture.serverContext())
        var plaintext: [UInt8] = []
        let http = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let error = #expect(throws: TLSError.self) { try server.receive(http, plaintext: &plaintext) }
        #expect(error?.kind == .handshakeFailed)
        #expect(error?.openSSLErrors.isEmpty == false)
        #expect(throws: TLSError.self) { try server.receive(http, plaintext: &plaintext) }
    }

    @Test func randomInputNeverTraps() throws {
        let context = try fixture.serverContext()
        var generator = SystemRandomNumberGenerator()
        var thrown = 0
        for i in 0..<400 {
            let server = try TLSSession(context: context)
            var input = (0..<Int.random(in: 1...600, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            // Half of the inputs look like a handshake record header, to get past the first checks.
            if i % 2 == 0 && input.count >= 5 {
                input[0] = 0x16; input[1] = 0x03; input[2] = 0x01
                let length = min(input.count - 5, Int.random(in: 0...700, using: &generator))
                input[3] = UInt8(length >> 8); input[4] = UInt8(length & 0xFF)
                if input.count >= 6 { input[5] = 0x01 }
            }
            var plaintext: [UInt8] = []
            do {
                let p = try server.receive(input, plaintext: &plaintext)
                #expect(p == .needMore)
            } catch {
                thrown += 1
            }
            #expect(plaintext.isEmpty)
            var out: [UInt8] = []
            server.takeOutput(into: &out)
        }
        #expect(thrown > 0)
    }

    @Test func corruptedRecordAfterHandshakeIsAProtocolError() throws {
        let server = try TLSSession(context: try fixture.serverContext())
        let client = TLSTestClient()
        var plaintext: [UInt8] = []
        _ = try pump(client, server, serverPlaintext: &plaintext)
        client.write(stunBindingRequest)
        var record = client.output()
        record[record.count - 3] ^= 0x55   // breaks the AEAD tag
        let error = #expect(throws: TLSError.self) { try server.receive(record, plaintext: &plaintext) }
        #expect(error?.kind == .protocolError)
        #expect(plaintext.isEmpty)
    }

    @Test func truncatedRecordsNeedMore() throws {
        let server = try TLSSession(context: try fixture.serverContext())
        let client = TLSTestClient()
        var plaintext: [UInt8] = []
        client.handshake()
        let hello = client.output()
        // The ClientHello one byte at a time: needMore, and no output until it is whole.
        for (i, byte) in hello.enumerated() {
            let p = try server.receive([byte], plaintext: &plaintext)
            #expect(p == .needMore)
            if i < hello.count - 1 { #expect(server.pendingOutput == 0) }
        }
        #expect(server.pendingOutput > 0)
        var wire: [UInt8] = []
        server.takeOutput(into: &wire)
        client.feed(wire)
        _ = try pump(client, server, serverPlaintext: &plaintext)
        #expect(server.handshakeComplete)

        // An application data record split in two.
        client.write(stunBindingRequest)
        let record = client.output()
        #expect(try server.receive(Array(record[..<7]), plaintext: &plaintext) == .needMore)
        #expect(plaintext.isEmpty)
        #expect(try server.receive(Array(record[7...]), plaintext: &plaintext) == .data)
        #expect(plaintext == stunBindingRequest)
    }

    // MARK: Configuration errors

    @Test func missingFiles() {
        let error = #expect(throws: TLSError.self) {
            try TLSServerContext(certificateChainPath: fixture.directory + "/nope.pem", privateKeyPath: fixture.key)
        }
        #expect(error?.kind == .fileNotReadable)
        #expect(error?.description.contains("nope.pem") == true)
        #expect(error?.description.contains("No such file") == true, "\(String(describing: error))")
        let keyError = #expect(throws: TLSError.self) {
            try TLSServerContext(certificateChainPath: fixture.cert, privateKeyPath: fixture.directory + "/nokey.pem")
        }
        #expect(keyError?.kind == .fileNotReadable)
    }

    @Test func badPEM() {
        let certError = #expect(throws: TLSError.self) {
            try TLSServerContext(certificateChainPath: fixture.garbage, privateKeyPath: fixture.key)
        }
        #expect(certError?.kind == .invalidCertificate)
        #expect(certError?.description.contains("garbage.pem") == true)
        #expect(certError?.openSSLErrors.isEmpty == false)
        // A certificate where the key should be.
        let keyError = #expect(throws: TLSError.self) {
            try TLSServerContext(certificateChainPath: fixture.cert, privateKeyPath: fixture.cert)
        }
        #expect(keyError?.kind == .invalidPrivateKey)
        #expect(keyError?.openSSLErrors.isEmpty == false)
    }

    @Test func mismatchedKey() {
        let error = #expect(throws: TLSError.self) {
            try TLSServerContext(certificateChainPath: fixture.cert, privateKeyPath: fixture.otherKey)
        }
        #expect(error?.kind == .keyMismatch)
        #expect(error?.description.contains("does not match") == true)
        #expect(error?.description.contains("key values mismatch") == true, "\(String(describing: error))")
        let dtlsError = #expect(throws: TLSError.self) {
            try TLSServerContext.dtls(certificateChainPath: fixture.otherCert, privateKeyPath: fixture.key)
        }
        #expect(dtlsError?.kind == .keyMismatch)
    }

    // MARK: Reload

    /// SIGHUP reload: a session keeps its SSL_CTX (OpenSSL refcount) after the Swift context object that
    /// made it is gone and a new context serves new sessions.
    @Test func sessionOutlivesItsContextObject() throws {
        weak var weakA: TLSServerContext?
        var session: TLSSession?
        do {
            let a = try fixture.serverContext()
            weakA = a
            session = try TLSSession(context: a)
        }
        #expect(weakA == nil, "the Swift context object is released")
        let b = try TLSServerContext(certificateChainPath: fixture.otherCert, privateKeyPath: fixture.otherKey)
        let old = try #require(session)

        // The old session still handshakes with A's certificate, and carries data.
        let client = TLSTestClient(alpn: ["stun.turn"], trust: fixture.cert)
        var plaintext: [UInt8] = []
        _ = try pump(client, old, serverPlaintext: &plaintext)
        #expect(old.handshakeComplete)
        #expect(client.verifyResult == Int(X509_V_OK))
        #expect(old.negotiatedALPN == "stun.turn")
        client.write(stunBindingRequest)
        #expect(try old.receive(client.output(), plaintext: &plaintext) == .data)
        #expect(plaintext == stunBindingRequest)

        // New sessions use B's certificate.
        let fresh = try TLSSession(context: b)
        let clientB = TLSTestClient(trust: fixture.otherCert)
        var plaintextB: [UInt8] = []
        _ = try pump(clientB, fresh, serverPlaintext: &plaintextB)
        #expect(fresh.handshakeComplete)
        #expect(clientB.verifyResult == Int(X509_V_OK))
        session = nil   // frees A's SSL_CTX with the last session
    }
}
