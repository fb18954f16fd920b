import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Blocking JSON-over-HTTP/1.1 for the WebDriver wire protocol, on a plain loopback TCP socket.
///
/// Not URLSession: chromedriver writes its response headers without a space after the colon
/// ("Content-Length:249"), which is valid HTTP (RFC 9110 allows no whitespace there), but this
/// toolchain's FoundationNetworking rejects it and fails every request with NSURLErrorDomain -1,
/// "Failed writing header" (fixed upstream by swift-corelibs-foundation PR #5527).
enum WebDriverHTTP {
    /// `netns`: the named network namespace (`ip netns`) whose 127.0.0.1 the request goes to (a
    /// chromedriver running there); nil: this process's own.
    static func request(_ method: String, _ url: URL, body: [String: Any]? = nil,
                        timeout: TimeInterval, netns: String? = nil) throws -> (status: Int, json: [String: Any]?) {
        guard url.scheme == "http", let port = url.port, url.host == "127.0.0.1" else {
            throw BrowserHarnessError("WebDriverHTTP only talks to http://127.0.0.1:<port>, not \(url)")
        }
        let deadline = Date().addingTimeInterval(timeout)
        let payload = try body.map { try JSONSerialization.data(withJSONObject: $0) } ?? Data()
        var head = "\(method) \(url.path.isEmpty ? "/" : url.path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
        head += "Accept: application/json\r\nConnection: close\r\nContent-Length: \(payload.count)\r\n"
        if body != nil { head += "Content-Type: application/json; charset=utf-8\r\n" }
        head += "\r\n"
        let requestBytes = Array(head.utf8) + Array(payload)

        let fd = try netns.map { try NetworkNamespace.socket(in: $0, AF_INET, Int32(SOCK_STREAM.rawValue)) }
            ?? socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BrowserHarnessError("socket() failed, errno \(errno)") }
        defer { close(fd) }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 && errno != EINPROGRESS { throw BrowserHarnessError("\(method) \(url.path): connect failed, errno \(errno)") }

        func wait(_ events: Int32) throws {
            while true {
                let left = deadline.timeIntervalSinceNow
                if left <= 0 { throw BrowserHarnessError("\(method) \(url.path) timed out after \(Int(timeout)) s") }
                var pfd = pollfd(fd: fd, events: Int16(events), revents: 0)
                let n = poll(&pfd, 1, Int32(min(left, 1) * 1000) + 1)
                if n > 0 { return }
                if n < 0 && errno != EINTR { throw BrowserHarnessError("poll failed, errno \(errno)") }
            }
        }

        try wait(POLLOUT)
        var soError: Int32 = 0
        var soLen = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &soLen)
        if soError != 0 { throw BrowserHarnessError("\(method) \(url.path): connect failed, errno \(soError)") }
        var sent = 0
        while sent < requestBytes.count {
            try wait(POLLOUT)
            let n = requestBytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            if n <= 0 { throw BrowserHarnessError("\(method) \(url.path): send failed, errno \(errno)") }
            sent += n
        }

        // Read until the head is complete and Content-Length bytes of body arrived (or EOF).
        var response = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 16384)
        var headEnd: Int?
        var contentLength: Int?
        var status = 0
        while true {
            if let headEnd, let contentLength, response.count - headEnd >= contentLength { break }
            try wait(POLLIN)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            if n < 0 { throw BrowserHarnessError("\(method) \(url.path): recv failed, errno \(errno)") }
            if n == 0 { break }
            response += buffer[0..<n]
            if headEnd == nil, let end = findHeadEnd(response) {
                headEnd = end
                let lines = String(decoding: response[0..<end], as: UTF8.self).components(separatedBy: "\r\n")
                let statusParts = lines.first?.split(separator: " ") ?? []
                status = statusParts.count >= 2 ? Int(statusParts[1]) ?? 0 : 0
                for line in lines.dropFirst() {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    if line[..<colon].trimmingCharacters(in: .whitespaces).lowercased() == "content-length" {
                        contentLength = Int(line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
                    }
                }
            }
        }
        guard let headEnd else { throw BrowserHarnessError("\(method) \(url.path): no HTTP response (\(response.count) bytes)") }
        var bodyBytes = Array(response[headEnd...])
        if let contentLength, bodyBytes.count > contentLength { bodyBytes = Array(bodyBytes[0..<contentLength]) }
        let json = (try? JSONSerialization.jsonObject(with: Data(bodyBytes))) as? [String: Any]
        return (status, json)
    }

    /// The index just past "\r\n\r\n", if present.
    private static func findHeadEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i + 4
        }
        return nil
    }
}

/// Sockets in a named network namespace (`ip netns add NAME`, /var/run/netns/NAME), made by a
/// short-lived thread that enters the namespace (setns is per thread for network namespaces), so
/// the rest of the process stays where it is. A socket keeps the namespace it was made in: this
/// process can then listen on, or connect to, that namespace's own 127.0.0.1.
enum NetworkNamespace {
    /// setns(2): glibc declares it only under _GNU_SOURCE, which Swift's Glibc module does not set.
    @_silgen_name("setns") private static func setns(_ fd: Int32, _ nstype: Int32) -> Int32

    static func socket(in name: String, _ domain: Int32, _ type: Int32) throws -> Int32 {
        final class Box: @unchecked Sendable { var fd: Int32 = -1; var error: String? }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            let ns = open("/var/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
            guard ns >= 0 else { box.error = "open /var/run/netns/\(name): errno \(errno)"; return }
            defer { close(ns) }
            // CLONE_NEWNET; the thread ends right after, so it never has to switch back.
            guard setns(ns, 0x4000_0000) == 0 else { box.error = "setns \(name): errno \(errno)"; return }
            box.fd = Glibc.socket(domain, type, 0)
            if box.fd < 0 { box.error = "socket() in \(name): errno \(errno)" }
        }
        thread.start()
        guard done.wait(timeout: .now() + 5) == .success else { throw BrowserHarnessError("entering network namespace \(name) timed out") }
        if let error = box.error { throw BrowserHarnessError(error) }
        return box.fd
    }
}
