import Foundation
#if canImport(Glibc)
import Glibc
#endif

// MARK: - WebDriver plumbing

/// A chromedriver process on an ephemeral loopback port.
final class ChromeDriver {
    let process = Process()
    let port: UInt16
    let base: URL
    /// The network namespace chromedriver (and so Chromium) runs in, or nil for this process's own.
    let netns: String?
    private let logURL: URL

    /// `netns`: run chromedriver in that network namespace (`ip netns exec`), on its 127.0.0.1.
    init(path: String, home: String? = nil, netns: String? = nil) throws {
        self.netns = netns
        port = try Self.freeLoopbackPort(netns: netns)
        base = URL(string: "http://127.0.0.1:\(port)")!
        logURL = FileManager.default.temporaryDirectory.appendingPathComponent("tern-chromedriver-\(UUID().uuidString).log")
        if let netns {
            // `ip netns exec` execs the command: the process is chromedriver itself.
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            process.arguments = ["netns", "exec", netns, path, "--port=\(port)", "--log-path=\(logURL.path)"]
        } else {
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = ["--port=\(port)", "--log-path=\(logURL.path)"]
        }
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
            if let (status, json) = try? WebDriverHTTP.request("GET", base.appendingPathComponent("status"), timeout: 2, netns: netns),
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
                        "args": BrowserHarness.chromiumArguments(userDataDir: userDataDir.path, loopback: netns == nil),
                    ] as [String: Any],
                ] as [String: Any],
            ],
        ]
        let (status, json) = try WebDriverHTTP.request("POST", base.appendingPathComponent("session"), body: body, timeout: 30, netns: netns)
        let value = json?["value"] as? [String: Any]
        guard status == 200, let id = value?["sessionId"] as? String else {
            try? FileManager.default.removeItem(at: userDataDir)
            throw BrowserHarnessError("new session failed (HTTP \(status)): \(value ?? [:]) \(logTail)")
        }
        let browserPID = ((value?["capabilities"] as? [String: Any])?["goog:processID"] as? NSNumber)?.int32Value
        return WebDriverSession(base: base.appendingPathComponent("session").appendingPathComponent(id),
                                browserPID: browserPID, userDataDir: userDataDir, netns: netns)
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
            _ = try? WebDriverHTTP.request("GET", base.appendingPathComponent("shutdown"), timeout: 2, netns: netns)
            if !waitExit(2) {
                kill(process.processIdentifier, SIGTERM)
                if !waitExit(1) { kill(process.processIdentifier, SIGKILL) }
            }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: logURL)
    }

    /// A port the kernel just handed out for 127.0.0.1 (bound, read, released: a tiny race, fine here),
    /// in the network namespace `netns` when given.
    static func freeLoopbackPort(netns: String? = nil) throws -> UInt16 {
        let fd = try netns.map { try NetworkNamespace.socket(in: $0, AF_INET, Int32(SOCK_STREAM.rawValue)) }
            ?? socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
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
    /// The network namespace chromedriver runs in (its 127.0.0.1 is where requests go).
    let netns: String?
    private var deleted = false

    init(base: URL, browserPID: Int32?, userDataDir: URL, netns: String? = nil) {
        self.base = base
        self.browserPID = browserPID
        self.userDataDir = userDataDir
        self.netns = netns
    }

    func navigate(_ url: String) throws {
        let (status, json) = try WebDriverHTTP.request("POST", base.appendingPathComponent("url"), body: ["url": url], timeout: 20, netns: netns)
        guard status == 200 else { throw BrowserHarnessError("navigate to \(url) failed (HTTP \(status)): \(json ?? [:])") }
    }

    /// WebDriver "Execute Script" (synchronous): returns the script's JSON-able return value.
    func execute(_ script: String, _ args: [Any]) throws -> Any? {
        let (status, json) = try WebDriverHTTP.request("POST", base.appendingPathComponent("execute/sync"),
                                                       body: ["script": script, "args": args], timeout: 15, netns: netns)
        guard status == 200 else { throw BrowserHarnessError("execute script failed (HTTP \(status)): \(json ?? [:])") }
        let value = json?["value"]
        return value is NSNull ? nil : value
    }

    /// A PNG of the viewport (WebDriver "Take Screenshot").
    func screenshot() throws -> Data {
        let (status, json) = try WebDriverHTTP.request("GET", base.appendingPathComponent("screenshot"), timeout: 20, netns: netns)
        guard status == 200, let b64 = json?["value"] as? String, let png = Data(base64Encoded: b64) else {
            throw BrowserHarnessError("screenshot failed (HTTP \(status))")
        }
        return png
    }

    /// Sets the window size (WebDriver "Set Window Rect").
    func setWindowSize(width: Int, height: Int) throws {
        let (status, json) = try WebDriverHTTP.request("POST", base.appendingPathComponent("window/rect"),
                                                       body: ["width": width, "height": height], timeout: 10, netns: netns)
        guard status == 200 else { throw BrowserHarnessError("set window rect failed (HTTP \(status)): \(json ?? [:])") }
    }

    /// Polls `script` (a WebDriver script returning a value) until `done` says so, bounded by
    /// `timeout`; returns the last value.
    func waitFor(_ script: String, timeout: TimeInterval, done: (Any?) -> Bool) throws -> Any? {
        let deadline = Date().addingTimeInterval(timeout)
        var last: Any? = nil
        while Date() < deadline {
            last = try execute(script, [])
            if done(last) { return last }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return last
    }

    /// Deletes the session (chromedriver quits Chromium), makes sure the browser process is gone
    /// (by its pid), and removes the profile directory.
    func delete() {
        guard !deleted else { return }
        deleted = true
        _ = try? WebDriverHTTP.request("DELETE", base, timeout: 10, netns: netns)
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
