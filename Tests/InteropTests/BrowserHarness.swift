import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One `icecandidateerror` event as the page saw it (RTCPeerConnectionIceErrorEvent).
struct BrowserICECandidateError: CustomStringConvertible {
    var code: Int
    var text: String
    var url: String
    /// The local address the failed request went from (Chromium masks the last octet: "127.0.0.x").
    var address: String
    var port: Int

    var description: String { "\(code) \(text) (\(url) from \(address):\(port))" }
}

/// What one run of the relay page measured.
struct BrowserRelayResult: CustomStringConvertible {
    /// Milliseconds from the start of the run to the offerer's data channel "open"; nil if it never opened.
    var dataChannelOpenMs: Double?
    /// Both peers received all messages, in order and intact.
    var messagesOK: Bool
    /// `framesDecoded` of the answerer's inbound video RTP stream.
    var framesDecoded: Int
    /// Frames the `<video>` element presented (requestVideoFrameCallback count).
    var videoFrames: Int
    /// candidateType of the local candidate of the selected pair: [offerer, answerer].
    var localCandidateTypes: [String]
    /// candidateType of the remote candidate of the selected pair: [offerer, answerer].
    var remoteCandidateTypes: [String]
    /// Candidates each peer gathered: [offerer, answerer].
    var candidateCounts: [Int]
    var iceCandidateErrors: [BrowserICECandidateError]
    /// Where the page ended: "complete", "candidate error", "gathering complete", "connected", "failed", or the
    /// phase it was in when the harness gave up.
    var phase: String
    /// Page error, or the harness's "timed out" note; nil when the run ended as asked.
    var error: String?
    /// The page's own timestamped event log (candidates, ICE states, errors): for failure messages.
    var log: [String]

    var description: String {
        var s = "phase=\(phase) dataChannelOpenMs=\(dataChannelOpenMs.map { String(format: "%.0f", $0) } ?? "nil")"
        s += " messagesOK=\(messagesOK) framesDecoded=\(framesDecoded) videoFrames=\(videoFrames)"
        s += " local=\(localCandidateTypes) remote=\(remoteCandidateTypes) candidates=\(candidateCounts)"
        s += " iceCandidateErrors=\(iceCandidateErrors) error=\(error ?? "nil")"
        s += "\npage log:\n  " + log.joined(separator: "\n  ")
        return s
    }
}

struct BrowserHarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Headless Chromium driven through chromedriver's W3C WebDriver HTTP API, running a WebRTC
/// relay-only call between two RTCPeerConnections in one page (see `BrowserPage`).
enum BrowserHarness {
    static let browserCandidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome",
                                    "/usr/lib/chromium/chromium"]
    static let driverCandidates = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]

    static var browserPath: String? { firstExecutable(browserCandidates, env: "TERN_CHROMIUM") }
    static var driverPath: String? { firstExecutable(driverCandidates, env: "TERN_CHROMEDRIVER") }

    /// True when both a Chromium and a chromedriver binary are installed.
    static var isAvailable: Bool { browserPath != nil && driverPath != nil }

    private static func firstExecutable(_ paths: [String], env: String) -> String? {
        if let p = ProcessInfo.processInfo.environment[env], FileManager.default.isExecutableFile(atPath: p) { return p }
        return paths.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The Chromium switches. Besides the obvious headless ones:
    /// - `--use-fake-device-for-media-stream` / `--use-fake-ui-for-media-stream`: getUserMedia gets a
    ///   synthetic camera (a moving test pattern) without a permission prompt.
    /// - `--allow-loopback-in-peer-connection`: lets WebRTC use the loopback interface, so the
    ///   TURN server on 127.0.0.1 is reachable on a host whose only network is `lo`.
    static func chromiumArguments(userDataDir: String) -> [String] {
        [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--allow-loopback-in-peer-connection",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--user-data-dir=\(userDataDir)",
        ]
    }

    /// Runs the relay page once with `iceServers` (a JSON array literal for RTCConfiguration.iceServers,
    /// both peers relay-only) and returns what it measured. Starts chromedriver and Chromium, and
    /// ends both, every time. Throws only when the browser machinery itself fails; a call that does
    /// not connect comes back as a result with `error` set.
    ///
    /// With `expectConnection` false the page returns soon after the first icecandidateerror or
    /// once both peers finished gathering, instead of waiting for a connection.
    /// `home`: a HOME for chromedriver and Chromium (Chromium on Linux reads the NSS certificate
    /// database from `$HOME/.pki/nssdb`, which is how a test makes it trust a `turns:` certificate).
    static func runRelayTest(iceServers: String, timeout: TimeInterval = 30, expectConnection: Bool = true,
                             messages: Int = 50, minFramesDecoded: Int = 30, video: Bool = true,
                             home: String? = nil) throws -> BrowserRelayResult {
        guard let browser = browserPath, let driver = driverPath else {
            throw BrowserHarnessError("chromium or chromedriver not installed")
        }
        guard let data = iceServers.data(using: .utf8),
              (try? JSONSerialization.jsonObject(with: data)) is [Any] else {
            throw BrowserHarnessError("iceServers is not a JSON array: \(iceServers)")
        }
        let t0 = Date()
        let trace = ProcessInfo.processInfo.environment["TERN_BROWSER_TRACE"] != nil
        func mark(_ what: String) {
            if trace { FileHandle.standardError.write(Data(String(format: "browser harness: %6.3f s %@\n", Date().timeIntervalSince(t0), what).utf8)) }
        }
        let server = try BrowserPage.Server()
        defer { server.stop(); mark("page server stopped") }
        // The port is picked by binding and releasing it, so another process may take it first: retry.
        var attempt = 0
        let chrome: ChromeDriver
        while true {
            do {
                chrome = try ChromeDriver(path: driver, home: home)
                break
            } catch {
                attempt += 1
                if attempt >= 3 { throw error }
            }
        }
        defer { chrome.stop(); mark("chromedriver stopped") }
        mark("chromedriver ready")
        let session = try chrome.newSession(browser: browser)
        defer { session.delete(); mark("session deleted") }
        mark("session created")

        try session.navigate(server.url)
        let start: [String: Any] = [
            "iceServers": iceServers, "messages": messages, "minFrames": minFramesDecoded,
            "video": video, "expectConnection": expectConnection,
        ]
        let started = try session.execute("return typeof window.ternStart === 'function' && window.ternStart(arguments[0]);", [start])
        guard started as? Bool == true else { throw BrowserHarnessError("the test page did not start: \(String(describing: started))") }

        let deadline = Date().addingTimeInterval(timeout)
        var last: [String: Any] = [:]
        while true {
            if let r = try session.execute("return window.ternResult;", []) as? [String: Any] {
                last = r
                if r["done"] as? Bool == true {
                    mark("page done")
                    return parse(r, timedOut: nil)
                }
            }
            if Date() >= deadline { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return parse(last, timedOut: timeout)
    }

    private static func parse(_ r: [String: Any], timedOut: TimeInterval?) -> BrowserRelayResult {
        func int(_ v: Any?) -> Int { (v as? NSNumber)?.intValue ?? (v as? Int) ?? 0 }
        let errors = (r["errors"] as? [[String: Any]] ?? []).map {
            BrowserICECandidateError(code: int($0["code"]), text: $0["text"] as? String ?? "",
                                     url: $0["url"] as? String ?? "", address: $0["address"] as? String ?? "",
                                     port: int($0["port"]))
        }
        let phase = r["phase"] as? String ?? "not started"
        var error = r["error"] as? String
        if let timedOut, error == nil {
            error = "timed out after \(Int(timedOut)) s in phase \(phase)"
        }
        return BrowserRelayResult(
            dataChannelOpenMs: (r["dataChannelOpenMs"] as? NSNumber)?.doubleValue,
            messagesOK: r["messagesOK"] as? Bool ?? false,
            framesDecoded: int(r["framesDecoded"]),
            videoFrames: int(r["videoFrames"]),
            localCandidateTypes: r["local"] as? [String] ?? [],
            remoteCandidateTypes: r["remote"] as? [String] ?? [],
            candidateCounts: (r["candidates"] as? [Any] ?? []).map { int($0) },
            iceCandidateErrors: errors,
            phase: phase,
            error: error,
            log: r["log"] as? [String] ?? []
        )
    }
}

// MARK: - WebDriver plumbing

/// A chromedriver process on an ephemeral loopback port.
final class ChromeDriver {
    let process = Process()
    let port: UInt16
    let base: URL
    private let logURL: URL

    init(path: String, home: String? = nil) throws {
        port = try Self.freeLoopbackPort()
        base = URL(string: "http://127.0.0.1:\(port)")!
        logURL = FileManager.default.temporaryDirectory.appendingPathComponent("tern-chromedriver-\(UUID().uuidString).log")
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["--port=\(port)", "--log-path=\(logURL.path)"]
        if let home {
            var env = ProcessInfo.processInfo.environment
            env["HOME"] = home
            process.environment = env
        }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Ready when /status says so (bounded).
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if !process.isRunning { break }
            if let (status, json) = try? WebDriverHTTP.request("GET", base.appendingPathComponent("status"), timeout: 2),
               status == 200, ((json?["value"] as? [String: Any])?["ready"] as? Bool) == true {
                return
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let log = logTail
        stop()
        throw BrowserHarnessError("chromedriver on port \(port) did not become ready: \(log)")
    }

    var logTail: String {
        guard let text = try? String(contentsOf: logURL, encoding: .utf8) else { return "" }
        return String(text.suffix(2000))
    }

    func newSession(browser: String) throws -> WebDriverSession {
        let userDataDir = FileManager.default.temporaryDirectory.appendingPathComponent("tern-chromium-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: userDataDir, withIntermediateDirectories: true)
        let body: [String: Any] = [
            "capabilities": [
                "alwaysMatch": [
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": ["script": 10_000, "pageLoad": 15_000],
                    "goog:chromeOptions": [
                        "binary": browser,
                        "args": BrowserHarness.chromiumArguments(userDataDir: userDataDir.path),
                    ] as [String: Any],
                ] as [String: Any],
            ],
        ]
        let (status, json) = try WebDriverHTTP.request("POST", base.appendingPathComponent("session"), body: body, timeout: 30)
        let value = json?["value"] as? [String: Any]
        guard status == 200, let id = value?["sessionId"] as? String else {
            try? FileManager.default.removeItem(at: userDataDir)
            throw BrowserHarnessError("new session failed (HTTP \(status)): \(value ?? [:]) \(logTail)")
        }
        let browserPID = ((value?["capabilities"] as? [String: Any])?["goog:processID"] as? NSNumber)?.int32Value
        return WebDriverSession(base: base.appendingPathComponent("session").appendingPathComponent(id),
                                browserPID: browserPID, userDataDir: userDataDir)
    }

    /// chromedriver's own /shutdown, then SIGTERM, then SIGKILL, each with a bounded wait; removes the log.
    /// (/shutdown first: under `swift test` the child inherits a signal mask in which SIGTERM can be
    /// blocked, and then SIGTERM only takes effect as the SIGKILL after the wait.)
    func stop() {
        func waitExit(_ seconds: TimeInterval) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
            return !process.isRunning
        }
        if process.isRunning {
            _ = try? WebDriverHTTP.request("GET", base.appendingPathComponent("shutdown"), timeout: 2)
            if !waitExit(2) {
                kill(process.processIdentifier, SIGTERM)
                if !waitExit(1) { kill(process.processIdentifier, SIGKILL) }
            }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: logURL)
    }

    /// A port the kernel just handed out for 127.0.0.1 (bound, read, released: a tiny race, fine here).
    static func freeLoopbackPort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BrowserHarnessError("socket() failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else { throw BrowserHarnessError("bind/getsockname failed, errno \(errno)") }
        return UInt16(bigEndian: addr.sin_port)
    }
}

/// One WebDriver session (one Chromium).
final class WebDriverSession {
    let base: URL
    let browserPID: Int32?
    let userDataDir: URL
    private var deleted = false

    init(base: URL, browserPID: Int32?, userDataDir: URL) {
        self.base = base
        self.browserPID = browserPID
        self.userDataDir = userDataDir
    }

    func navigate(_ url: String) throws {
        let (status, json) = try WebDriverHTTP.request("POST", base.appendingPathComponent("url"), body: ["url": url], timeout: 20)
        guard status == 200 else { throw BrowserHarnessError("navigate to \(url) failed (HTTP \(status)): \(json ?? [:])") }
    }

    /// WebDriver "Execute Script" (synchronous): returns the script's JSON-able return value.
    func execute(_ script: String, _ args: [Any]) throws -> Any? {
        let (status, json) = try WebDriverHTTP.request("POST", base.appendingPathComponent("execute/sync"),
                                                       body: ["script": script, "args": args], timeout: 15)
        guard status == 200 else { throw BrowserHarnessError("execute script failed (HTTP \(status)): \(json ?? [:])") }
        let value = json?["value"]
        return value is NSNull ? nil : value
    }

    /// Deletes the session (chromedriver quits Chromium), makes sure the browser process is gone
    /// (by its pid), and removes the profile directory.
    func delete() {
        guard !deleted else { return }
        deleted = true
        _ = try? WebDriverHTTP.request("DELETE", base, timeout: 10)
        if let pid = browserPID, pid > 0 {
            let deadline = Date().addingTimeInterval(3)
            while Self.isAlive(pid) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            if Self.isAlive(pid) { kill(pid, SIGKILL) }
        }
        try? FileManager.default.removeItem(at: userDataDir)
    }

    /// Running and not a zombie. (After the session is deleted Chromium stays a zombie until
    /// chromedriver, its parent, reaps it, and `kill(pid, 0)` still succeeds on a zombie.)
    static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return kill(pid, 0) == 0 }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != "Z" && state != "X"
    }
}

/// Blocking JSON-over-HTTP/1.1 for the WebDriver wire protocol, on a plain loopback TCP socket.
///
/// Not URLSession: chromedriver writes its response headers without a space after the colon
/// ("Content-Length:249"), which is valid HTTP (RFC 9110 allows no whitespace there), but this
/// toolchain's FoundationNetworking rejects it and fails every request with NSURLErrorDomain -1,
/// "Failed writing header" (fixed upstream by swift-corelibs-foundation PR #5527).
enum WebDriverHTTP {
    static func request(_ method: String, _ url: URL, body: [String: Any]? = nil,
                        timeout: TimeInterval) throws -> (status: Int, json: [String: Any]?) {
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

        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
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
