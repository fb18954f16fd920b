import Foundation
import STUN
import TernIO

/// The pieces of `ProxyProtocolInteropTests`: a load balancer run as a child process from a config
/// file of its own, and a TURN client over TCP whose source address and port the test knows.
extension HeavyInteropTests.ProxyProtocolInteropTests {
    struct TestFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// Polls `condition` every 20 ms for at most `seconds`.
    static func eventually(within seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return condition()
    }

    /// Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp, so without connecting:
    /// a probe through a proxy would reach Tern and be counted).
    static func listening(_ port: UInt16) -> Bool {
        // Read to the end: String(contentsOfFile:) stops at the first 4 KiB of a /proc file.
        guard let data = FileHandle(forReadingAtPath: "/proc/net/tcp")?.readDataToEndOfFile() else { return false }
        let table = String(decoding: data, as: UTF8.self)
        let local = String(format: "0100007F:%04X", port)
        return table.split(separator: "\n").contains { line in
            let f = line.split(separator: " ")
            return f.count > 3 && f[1] == local && f[3] == "0A"
        }
    }

    /// HAProxy or nginx in the foreground, its config in a directory of its own; stdout and stderr
    /// collected. Stopped with SIGKILL (children of the test runner block SIGTERM), which is why
    /// nginx runs without a master process: nothing is left behind.
    final class ProxyProcess {
        let process = Process()
        let directory: URL
        private let pipe = Pipe()
        private let lock = NSLock()
        private var text = ""

        init(_ path: String, config: String, name: String, arguments: (String) -> [String]) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("tern-proxy-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let file = directory.appendingPathComponent(name).path
            // HAProxy refuses a config whose last line has no LF ("file might have been truncated").
            try (config + "\n").write(toFile: file, atomically: true, encoding: .utf8)
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments(file)
            process.standardOutput = pipe
            process.standardError = pipe
            pipe.fileHandleForReading.readabilityHandler = { [weak self] h in
                let data = h.availableData
                guard let self, !data.isEmpty else { return }
                self.lock.lock()
                self.text += String(decoding: data, as: UTF8.self)
                self.lock.unlock()
            }
            try process.run()
        }

        var output: String {
            lock.lock()
            defer { lock.unlock() }
            return text
        }

        /// Waits (bounded) until every port listens; false if the process exits first.
        func waitUntilListening(_ ports: [UInt16], timeout: TimeInterval = 10) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline && process.isRunning {
                if ports.allSatisfy(HeavyInteropTests.ProxyProtocolInteropTests.listening) { return true }
                Thread.sleep(forTimeInterval: 0.02)
            }
            return false
        }

        func stop() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            Thread.sleep(forTimeInterval: 0.1)  // the handler takes the last of its output
            pipe.fileHandleForReading.readabilityHandler = nil
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// A blocking TURN client over TCP to 127.0.0.1:`port` (user alice), from `source` when given,
    /// sending `prefix` first. Every read is bounded by a 5 s receive timeout.
    final class StreamTurnClient {
        let fd: Int32
        let local: TransportAddress
        private var realm: String?
        private var nonce: String?
        private var open = true

        init(port: UInt16, from source: IPAddress? = nil, prefix: [UInt8] = []) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let fd = self.fd
            if let source, TernSocketAddress(TransportAddress(ip: source, port: 0)).withSockAddr({ bind(fd, $0, $1) }) != 0 {
                Glibc.close(fd)
                throw TestFailure("bind \(source): errno \(errno)")
            }
            guard TernSocketAddress(TransportAddress(ip: .loopbackV4, port: port)).withSockAddr({ connect(fd, $0, $1) }) == 0 else {
                Glibc.close(fd)
                throw TestFailure("connect 127.0.0.1:\(port): errno \(errno)")
            }
            var addr = sockaddr_in()
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            local = TransportAddress(ip: .v4(UInt32(bigEndian: addr.sin_addr.s_addr)), port: UInt16(bigEndian: addr.sin_port))
            send(prefix)
        }

        deinit { close() }

        func close() {
            guard open else { return }
            open = false
            Glibc.close(fd)
        }

        func send(_ bytes: [UInt8]) {
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }
                off += n
            }
        }

        func receiveExactly(_ count: Int) -> [UInt8]? {
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: max(count, 1))
            while out.count < count {
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - out.count, 0) }
                if n <= 0 { return nil }
                out += buf[0..<n]
            }
            return out
        }

        /// A request with alice's long-term credentials, answering the 401 challenge once.
        func request(_ method: STUN.Method, _ attributes: [Attribute]) throws -> Message {
            for _ in 0..<2 {
                var attrs = attributes
                var key: [UInt8]? = nil
                if let realm, let nonce, method != .binding {
                    attrs += [.username("alice"), .realm(realm), .nonce(nonce)]
                    key = LongTermKey.md5(username: "alice", realm: realm, password: "wonderland")
                }
                let id = TransactionID.random()
                send(Message(type: MessageType(method: method, class: .request), transactionID: id, attributes: attrs)
                    .encode(integrityKey: key, fingerprint: true))
                guard let head = receiveExactly(20), let body = receiveExactly(Int(head[2]) << 8 | Int(head[3])),
                      let answer = try? Message.decode(head + body), answer.transactionID == id else {
                    throw TestFailure("no answer to \(method)")
                }
                guard answer.errorCode?.code == 401, realm == nil,
                      case .realm(let r)? = answer.first(.realm), case .nonce(let n)? = answer.first(.nonce) else { return answer }
                realm = r
                nonce = n
            }
            throw TestFailure("challenged twice")
        }

        func mapped(_ m: Message) -> TransportAddress? {
            guard case .xorMappedAddress(let a)? = m.first(.xorMappedAddress) else { return nil }
            return a
        }

        /// Sends a Binding request; true when the server closes (EOF or reset) without a byte of answer.
        func closedWithoutAnswer() -> Bool {
            send(Message(type: MessageType(method: .binding, class: .request), transactionID: .random(), attributes: []).encode())
            var buf = [UInt8](repeating: 0, count: 512)
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 512, 0) }
            return n == 0 || (n < 0 && errno == ECONNRESET)
        }
    }
}
