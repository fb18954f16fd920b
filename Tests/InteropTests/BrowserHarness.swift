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
    ///   TURN server on 127.0.0.1 is reachable on a host whose only network is `lo`. Left out with
    ///   `loopback` false (a browser in a network namespace with a real link: on `lo` its TURN
    ///   requests to a non-loopback server only fail, with icecandidateerror 701).
    static func chromiumArguments(userDataDir: String, loopback: Bool = true) -> [String] {
        [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ] + (loopback ? ["--allow-loopback-in-peer-connection"] : []) + [
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--user-data-dir=\(userDataDir)",
        ]
    }

    /// Runs `body` with a fresh Chromium session (chromedriver and the browser end afterwards).
    /// `netns`: chromedriver and Chromium run in that network namespace (`ip netns`).
    static func withSession<T>(home: String? = nil, netns: String? = nil, _ body: (WebDriverSession) throws -> T) throws -> T {
        guard let browser = browserPath, let driver = driverPath else {
            throw BrowserHarnessError("chromium or chromedriver not installed")
        }
        // The port is picked by binding and releasing it, so another process may take it first: retry.
        var attempt = 0
        let chrome: ChromeDriver
        while true {
            do {
                chrome = try ChromeDriver(path: driver, home: home, netns: netns)
                break
            } catch {
                attempt += 1
                if attempt >= 3 { throw error }
            }
        }
        defer { chrome.stop() }
        let session = try chrome.newSession(browser: browser)
        defer { session.delete() }
        return try body(session)
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
    /// `netns`: run chromedriver and Chromium in that network namespace (`ip netns add`), the page
    /// served on that namespace's 127.0.0.1 (a secure context there), WebDriver reached through a
    /// socket made in it; nil: this process's own network. Chromium looks a name up before its first
    /// navigation: the namespace needs a resolver that fails fast (/etc/netns/NAME/resolv.conf).
    static func runRelayTest(iceServers: String, timeout: TimeInterval = 30, expectConnection: Bool = true,
                             messages: Int = 50, minFramesDecoded: Int = 30, video: Bool = true,
                             home: String? = nil, netns: String? = nil) throws -> BrowserRelayResult {
        guard let data = iceServers.data(using: .utf8),
              (try? JSONSerialization.jsonObject(with: data)) is [Any] else {
            throw BrowserHarnessError("iceServers is not a JSON array: \(iceServers)")
        }
        let t0 = Date()
        let trace = ProcessInfo.processInfo.environment["TERN_BROWSER_TRACE"] != nil
        func mark(_ what: String) {
            if trace { FileHandle.standardError.write(Data(String(format: "browser harness: %6.3f s %@\n", Date().timeIntervalSince(t0), what).utf8)) }
        }
        let server = try BrowserPage.Server(netns: netns)
        defer { server.stop(); mark("page server stopped") }
        return try withSession(home: home, netns: netns) { session in
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
