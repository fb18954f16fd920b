import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
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
    static func runRelayTest(iceServers: String, timeout: TimeInterval = 30, expectConnection: Bool = true,
                             messages: Int = 50, minFramesDecoded: Int = 30, video: Bool = true) throws -> BrowserRelayResult {
        guard let browser = browserPath, let driver = driverPath else {
            throw BrowserHarnessError("chromium or chromedriver not installed")
        }
        guard let data = iceServers.data(using: .utf8),
              (try? JSONSerialization.jsonObject(with: data)) is [Any] else {
            throw BrowserHarnessError("iceServers is not a JSON array: \(iceServers)")
        }
        let server = try BrowserPage.Server()
        defer { server.stop() }
        let chrome = try ChromeDriver(path: driver)
        defer { chrome.stop() }
        let session = try chrome.newSession(browser: browser)
        defer { session.delete() }

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
                if r["done"] as? Bool == true { return parse(r, timedOut: nil) }
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

    init(path: String) throws {
        port = try Self.freeLoopbackPort()
        base = URL(string: "http://127.0.0.1:\(port)")!
        logURL = FileManager.default.temporaryDirectory.appendingPathComponent("tern-chromedriver-\(UUID().uuidString).log")
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["--port=\(port)", "--log-path=\(logURL.path)"]
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

    /// SIGTERM, bounded wait, then SIGKILL; removes the log file.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(3)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
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
            while kill(pid, 0) == 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
        try? FileManager.default.removeItem(at: userDataDir)
    }
}

/// Blocking JSON-over-HTTP for the WebDriver wire protocol, on URLSession (libcurl on Linux).
enum WebDriverHTTP {
    final class Box: @unchecked Sendable {
        var data: Data?
        var response: URLResponse?
        var error: Error?
    }

    static let session: URLSession = {
        let config = URLSessionConfiguration.ephemeral
        config.connectionProxyDictionary = [:]
        config.timeoutIntervalForRequest = 60
        return URLSession(configuration: config)
    }()

    static func request(_ method: String, _ url: URL, body: [String: Any]? = nil,
                        timeout: TimeInterval) throws -> (status: Int, json: [String: Any]?) {
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeout)
        request.httpMethod = method
        if let body {
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
            request.setValue("application/json; charset=utf-8", forHTTPHeaderField: "Content-Type")
        }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let task = session.dataTask(with: request) { data, response, error in
            box.data = data
            box.response = response
            box.error = error
            done.signal()
        }
        task.resume()
        if done.wait(timeout: .now() + timeout + 2) == .timedOut {
            task.cancel()
            throw BrowserHarnessError("\(method) \(url.path) timed out after \(Int(timeout)) s")
        }
        if let error = box.error { throw BrowserHarnessError("\(method) \(url.path): \(error)") }
        let status = (box.response as? HTTPURLResponse)?.statusCode ?? 0
        let json = box.data.flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]
        return (status, json)
    }
}
