#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import STUN

/// A TLS client over a real blocking TCP socket (OpenSSL over memory BIOs, pumped by hand), for
/// testing `tls` listeners end to end. Every wait is bounded by the socket's receive timeout.
final class TLSStream {
    let socket: TestSocket
    let client: TLSTestClient
    private var buffer: [UInt8] = []

    init(socket: TestSocket, trust caFile: String, alpn: [String] = ["stun.turn"]) throws {
        self.socket = socket
        client = TLSTestClient(alpn: alpn, trust: caFile)
        for _ in 0..<50 {
            let r = client.handshake()
            let out = client.output()
            if !out.isEmpty { socket.send(out) }
            if r == 1 { return }
            if r < 0 { throw TestFailure("TLS handshake failed") }
            guard let raw = socket.receive(), !raw.isEmpty else { throw TestFailure("TLS handshake: no answer") }
            client.feed(raw)
        }
        throw TestFailure("TLS handshake did not finish")
    }

    func send(_ bytes: [UInt8]) {
        client.write(bytes)
        socket.send(client.output())
    }

    func receiveExactly(_ n: Int) -> [UInt8]? {
        while buffer.count < n {
            let (bytes, closed) = client.read()
            buffer += bytes
            if buffer.count >= n { break }
            if closed { return nil }
            guard let raw = socket.receive(), !raw.isEmpty else { return nil }
            client.feed(raw)
            let out = client.output()
            if !out.isEmpty { socket.send(out) }
        }
        let result = Array(buffer[0..<n])
        buffer.removeFirst(n)
        return result
    }

    /// The server certificate's subject, e.g. "/CN=localhost".
    var peerSubject: String? {
        guard let cert = SSL_get1_peer_certificate(client.ssl) else { return nil }
        defer { X509_free(cert) }
        guard let name = X509_get_subject_name(cert), let line = X509_NAME_oneline(name, nil, 0) else { return nil }
        defer { CRYPTO_free(line, #file, #line) }
        return String(cString: line)
    }

    var alpn: String? {
        var data: UnsafePointer<UInt8>? = nil
        var len: UInt32 = 0
        SSL_get0_alpn_selected(client.ssl, &data, &len)
        guard let data, len > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(len)), as: UTF8.self)
    }
}
