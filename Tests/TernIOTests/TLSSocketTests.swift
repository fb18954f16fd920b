#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import TernIO

/// One real-socket check: `/usr/bin/openssl s_client` against a tiny blocking loopback TCP server that
/// runs a `TLSSession` on the test thread.
@Suite("TLS over a real TCP socket with openssl s_client")
struct TLSSocketTests {
    @Test func sClientHandshakeALPNAndEcho() throws {
        let fixture = TLSFixture.shared
        let session = try TLSSession(context: try fixture.serverContext())

        // Listening socket on 127.0.0.1, ephemeral port.
        let listenFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(listenFD >= 0)
        defer { close(listenFD) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try #require(withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listenFD, $0, length) } } == 0)
        try #require(listen(listenFD, 1) == 0)
        try #require(withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listenFD, $0, &length) } } == 0)
        let port = UInt16(bigEndian: addr.sin_port)

        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        client.arguments = ["s_client", "-connect", "127.0.0.1:\(port)", "-alpn", "stun.turn", "-quiet",
                            "-verify_return_error", "-CAfile", fixture.cert]
        let stdin = Pipe(), stdout = Pipe()
        client.standardInput = stdin
        client.standardOutput = stdout
        client.standardError = FileHandle.nullDevice
        try client.run()
        defer {
            if client.isRunning { kill(client.processIdentifier, SIGKILL) }   // SIGTERM is blocked in test children
            client.waitUntilExit()
        }
        stdin.fileHandleForWriting.write(Data("ping\n".utf8))

        // Accept, bounded by poll.
        var pfd = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
        try #require(poll(&pfd, 1, 5000) == 1, "s_client did not connect")
        let fd = accept(listenFD, nil, nil)
        try #require(fd >= 0)
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))

        func flush() {
            var out: [UInt8] = []
            session.takeOutput(into: &out)
            var off = 0
            while off < out.count {
                let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + off, out.count - off, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }
                off += n
            }
        }

        var plaintext: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while !plaintext.contains(UInt8(ascii: "\n")) {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            _ = try buffer.withUnsafeBytes { try session.receive(UnsafeRawBufferPointer(rebasing: $0[0..<n]), plaintext: &plaintext) }
            flush()
        }
        #expect(session.handshakeComplete)
        #expect(session.negotiatedALPN == "stun.turn")
        #expect(session.protocolVersion == "TLSv1.3")
        #expect(String(decoding: plaintext, as: UTF8.self) == "ping\n")

        try session.send(Array("pong\n".utf8))
        session.shutdown()
        flush()
        shutdown(fd, Int32(SHUT_WR))

        // s_client prints what it got and exits on close_notify / EOF.
        let deadline = Date().addingTimeInterval(5)
        while client.isRunning && Date() < deadline { usleep(10_000) }
        let printed = String(decoding: stdout.fileHandleForReading.availableData, as: UTF8.self)
        #expect(printed.contains("pong"))
    }
}
