import COpenSSL
import Foundation
import STUN
import Testing
@testable import TernIO

/// Test-time certificates: two self-signed EC P-256 pairs made by /usr/bin/openssl in a temp directory,
/// plus a file that is not PEM.
struct TLSFixture: Sendable {
    let directory: String
    let cert: String
    let key: String
    let otherCert: String
    let otherKey: String
    let garbage: String

    static let shared: TLSFixture = {
        let dir = NSTemporaryDirectory() + "tern-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for name in ["a", "b"] {
            makeSelfSigned(key: "\(dir)/\(name)-key.pem", cert: "\(dir)/\(name)-cert.pem")
        }
        let garbage = "\(dir)/garbage.pem"
        _ = FileManager.default.createFile(atPath: garbage, contents: Data("this is not PEM\n".utf8))
        return TLSFixture(directory: dir, cert: "\(dir)/a-cert.pem", key: "\(dir)/a-key.pem",
                          otherCert: "\(dir)/b-cert.pem", otherKey: "\(dir)/b-key.pem", garbage: garbage)
    }()

    private static func makeSelfSigned(key: String, cert: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                       "-days", "1", "-subj", "/CN=localhost", "-keyout", key, "-out", cert]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try! p.run()
        p.waitUntilExit()
        precondition(p.terminationStatus == 0, "openssl req failed")
    }

    func serverContext() throws -> TLSServerContext {
        try TLSServerContext(certificateChainPath: cert, privateKeyPath: key)
    }
}

/// A client `SSL` driven directly with OpenSSL over memory BIOs, to talk to `TLSSession` in-process.
final class TLSTestClient {
    let ctx: OpaquePointer
    let ssl: OpaquePointer
    let rbio: OpaquePointer
    let wbio: OpaquePointer

    init(dtls: Bool = false, minVersion: Int32? = nil, maxVersion: Int32? = nil, alpn: [String] = [],
         trust caFile: String? = nil, lowSecurity: Bool = false) {
        ctx = SSL_CTX_new(dtls ? DTLS_client_method() : TLS_client_method())!
        if lowSecurity {
            SSL_CTX_set_security_level(ctx, 0)
            _ = SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0")
        }
        if let minVersion { _ = tern_ssl_ctx_set_min_proto(ctx, minVersion) }
        if let maxVersion { _ = tern_ssl_ctx_set_max_proto(ctx, maxVersion) }
        if let caFile {
            precondition(SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        }
        if !alpn.isEmpty {
            var wire: [UInt8] = []
            for name in alpn { wire.append(UInt8(name.utf8.count)); wire.append(contentsOf: name.utf8) }
            precondition(SSL_CTX_set_alpn_protos(ctx, wire, UInt32(wire.count)) == 0)
        }
        ssl = SSL_new(ctx)!
        rbio = BIO_new(BIO_s_mem())!
        wbio = BIO_new(BIO_s_mem())!
        _ = tern_bio_set_mem_eof_return(rbio, -1)
        _ = tern_bio_set_mem_eof_return(wbio, -1)
        SSL_set_bio(ssl, rbio, wbio)
        SSL_set_connect_state(ssl)
        if dtls { tern_ssl_set_fixed_mtu(ssl, 1200) }
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(ctx)
    }

    func feed(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        precondition(BIO_write(rbio, bytes, Int32(bytes.count)) == Int32(bytes.count))
    }

    /// 1: done, 0: in progress, -1: failed.
    @discardableResult
    func handshake() -> Int {
        ERR_clear_error()
        let r = SSL_do_handshake(ssl)
        if r == 1 { return 1 }
        let e = SSL_get_error(ssl, r)
        ERR_clear_error()
        return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1
    }

    var handshakeDone: Bool { SSL_is_init_finished(ssl) == 1 }

    func output() -> [UInt8] {
        let n = Int(BIO_ctrl_pending(wbio))
        guard n > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: n)
        let got = out.withUnsafeMutableBytes { BIO_read(wbio, $0.baseAddress, Int32(n)) }
        return Array(out[0..<Int(max(0, got))])
    }

    func write(_ bytes: [UInt8]) {
        precondition(SSL_write(ssl, bytes, Int32(bytes.count)) == Int32(bytes.count))
    }

    /// Everything readable now; `closed` when the server's close_notify arrived.
    func read() -> (bytes: [UInt8], closed: Bool) {
        var all: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16_384)
        while true {
            ERR_clear_error()
            let n = buf.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if n > 0 { all.append(contentsOf: buf[0..<Int(n)]); continue }
            let e = SSL_get_error(ssl, n)
            ERR_clear_error()
            return (all, e == SSL_ERROR_ZERO_RETURN)
        }
    }

    func shutdown() { _ = SSL_shutdown(ssl); ERR_clear_error() }

    var alpn: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    var verifyResult: Int { SSL_get_verify_result(ssl) }
}

/// Shuttles bytes between a client and a server session (stream TLS) until neither has anything to say.
/// Returns every progress value the server reported; server plaintext lands in `serverPlaintext`.
func pump(_ client: TLSTestClient, _ server: TLSSession, serverPlaintext: inout [UInt8]) throws -> [TLSProgress] {
    var progress: [TLSProgress] = []
    for _ in 0..<32 {
        if !client.handshakeDone { client.handshake() }
        let toServer = client.output()
        if !toServer.isEmpty { progress.append(try server.receive(toServer, plaintext: &serverPlaintext)) }
        var toClient: [UInt8] = []
        server.takeOutput(into: &toClient)
        client.feed(toClient)
        if toServer.isEmpty && toClient.isEmpty { break }
    }
    return progress
}

/// A STUN Binding request (RFC 8489): type 0x0001, length 0, magic cookie, 12-byte transaction id.
let stunBindingRequest: [UInt8] = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42] + (1...12).map { UInt8($0) }

/// A DTLS client over a connected UDP socket that has finished its handshake (nil if it failed).
func dtlsHandshake(_ socket: TestSocket, trust: String = TLSFixture.shared.cert) -> TLSTestClient? {
    let client = TLSTestClient(dtls: true, trust: trust)
    for _ in 0..<20 where !client.handshakeDone {
        if client.handshake() < 0 { return nil }
        let out = client.output()
        if !out.isEmpty { socket.send(out) }
        if client.handshakeDone { break }
        guard let reply = socket.receive() else { return nil }
        client.feed(reply)
    }
    return client.handshakeDone ? client : nil
}

/// A Binding over an established DTLS association: true if its answer came back.
func dtlsBinding(_ client: TLSTestClient, _ socket: TestSocket) -> Bool {
    let id = TransactionID.random()
    client.write(bindingRequest(id))
    socket.send(client.output())
    guard let encrypted = socket.receive() else { return false }
    client.feed(encrypted)
    return (try? Message.decode(client.read().bytes))?.transactionID == id
}
