import Foundation
import STUN
import Testing

/// The README's first command, as a newcomer runs it: `tern serve` with no config. It must relay
/// (TURN with a generated secret), print an `iceServers` entry that works from headless Chromium,
/// answer `POST /credentials`, and show live allocations and moving counters on the dashboard.
/// Fixed ports (3478, 8478): this is the only test that runs the built-in default.
extension HeavyInteropTests {
    @Suite("The first run: the built-in default relays and shows it", .serialized, .enabled(if: BrowserHarness.isAvailable))
    struct FirstRunTests {
        static let stunclient = "/usr/bin/turnutils_stunclient"
        static let uclient = "/usr/bin/turnutils_uclient"

        /// The `iceServers` entry tern printed: the line that is a JSON object with `urls`.
        static func printedEntry(_ stdout: String) -> (line: String, object: [String: Any])? {
            for line in stdout.split(separator: "\n") {
                let text = line.trimmingCharacters(in: .whitespaces)
                guard text.hasPrefix("{\"urls\""),
                      let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else { continue }
                return (text, object)
            }
            return nil
        }

        /// Where screenshots go: `TERN_SCREENSHOT_DIR` when set (to refresh `docs/`), else a temporary directory.
        static func screenshotURL(_ name: String) -> URL {
            let dir = ProcessInfo.processInfo.environment["TERN_SCREENSHOT_DIR"].map { URL(fileURLWithPath: $0) }
                ?? FileManager.default.temporaryDirectory
            return dir.appendingPathComponent(name)
        }

        @Test("tern serve without a config: STUN and TURN on 3478, a printed iceServers entry that relays video in Chromium, POST /credentials, and a dashboard with a live allocation and moving counters",
              .timeLimit(.minutes(3)))
        func firstRun() throws {
            let tern = try TernProcess(config: nil)
            defer { _ = tern.terminate() }
            #expect(tern.waitForOutput("Dashboard: "), "no greeting.\nstdout:\n\(tern.stdout)\nstderr:\n\(tern.stderr)")
            let bound = tern.boundListeners()
            #expect(bound.contains { $0.transport == "udp" && $0.address == TransportAddress("0.0.0.0:3478")! })
            #expect(bound.contains { $0.transport == "tcp" && $0.address == TransportAddress("0.0.0.0:3478")! })
            #expect(tern.stderr.contains("turn=on"), "TURN must be on in the built-in default: \(tern.stderr)")
            // STUN, with coturn's client.
            let stun = try runTool(Self.stunclient, ["127.0.0.1"])
            #expect(stun.output.contains("reflexive addr:"), "\(stun.output)")

            // The printed entry: STUN and TURN URLs over UDP and TCP, a REST credential for a day.
            let printed = try #require(Self.printedEntry(tern.stdout), "no iceServers entry in:\n\(tern.stdout)")
            let urls = try #require(printed.object["urls"] as? [String])
            #expect(urls.contains { $0.hasPrefix("stun:") && $0.hasSuffix(":3478") })
            #expect(urls.contains { $0.hasPrefix("turn:") && $0.hasSuffix(":3478?transport=udp") })
            #expect(urls.contains { $0.hasPrefix("turn:") && $0.hasSuffix(":3478?transport=tcp") })
            let hasOtherAddress = urls.contains { !$0.contains("127.0.0.1") && !$0.contains("[::1]") }
            #expect(hasOtherAddress || urls.allSatisfy { $0.contains("127.0.0.1") || $0.contains("[::1]") })
            if hasOtherAddress { #expect(!urls.contains { $0.contains("127.0.0.1") || $0.contains("[::1]") }, "loopback listed: \(urls)") }
            let username = try #require(printed.object["username"] as? String)
            let expiry = try #require(username.split(separator: ":").first.flatMap { UInt64($0) })
            let now = UInt64(Date().timeIntervalSince1970)
            #expect(expiry > now + 86_000 && expiry <= now + 86_400)
            #expect(tern.stdout.contains("Dashboard: http://127.0.0.1:8478/"))

            // The entry, pasted into a page: two relay-only peer connections, video and data.
            let r = try BrowserHarness.runRelayTest(iceServers: "[\(printed.line)]", timeout: 40)
            print("first run: \(urls.count) URLs, browser: \(r.framesDecoded) frames, pairs \(r.localCandidateTypes)/\(r.remoteCandidateTypes)")
            #expect(r.error == nil, "\(r)\ntern log:\n\(tern.stderr)")
            #expect(r.messagesOK, "\(r)")
            #expect(r.framesDecoded >= 30, "\(r)")
            #expect(r.localCandidateTypes == ["relay", "relay"], "\(r)")

            // POST /credentials: another credential, for coturn's client, relaying client to client.
            let admin = TransportAddress("127.0.0.1:8478")!
            let issued = try #require(httpRequest(admin, "/credentials", method: "POST"))
            #expect(issued.status == 200, "\(issued.body)")
            let ice = try #require((try? JSONSerialization.jsonObject(with: Data(issued.body.utf8))) as? [String: Any])
            let user = try #require(ice["username"] as? String), password = try #require(ice["credential"] as? String)
            let traffic = Process()
            traffic.executableURL = URL(fileURLWithPath: Self.uclient)
            traffic.arguments = ["-y", "-u", user, "-w", password, "-n", "600", "-m", "1", "-l", "200", "-z", "20",
                                 "-p", "3478", "127.0.0.1"]
            traffic.standardOutput = FileHandle.nullDevice
            traffic.standardError = FileHandle.nullDevice
            try traffic.run()
            defer { if traffic.isRunning { kill(traffic.processIdentifier, SIGKILL) }; traffic.waitUntilExit() }

            // The dashboard, in Chromium, while coturn's client relays.
            try BrowserHarness.withSession { session in
                try session.setWindowSize(width: 1440, height: 1400)
                try session.navigate("http://127.0.0.1:8478/")
                let state = try session.waitFor("""
                    return {polls: Number(document.body.dataset.polls || 0),
                            active: document.getElementById('allocActive').textContent,
                            pps: document.getElementById('pps').textContent,
                            ready: document.getElementById('ready').textContent.trim(),
                            workers: document.querySelectorAll('#workers tr').length};
                    """, timeout: 30) { value in
                    guard let v = value as? [String: Any] else { return false }
                    return (v["polls"] as? Int ?? 0) >= 4 && (v["active"] as? String).flatMap(Int.init) ?? 0 >= 1
                        && (v["pps"] as? String).map { $0 != "0" && $0 != "–" } == true
                }
                let v = try #require(state as? [String: Any], "no dashboard state")
                print("dashboard: \(v)")
                #expect((v["active"] as? String).flatMap(Int.init) ?? 0 >= 1, "no live allocation shown: \(v)")
                #expect((v["pps"] as? String).map { $0 != "0" && $0 != "–" } == true, "counters do not move: \(v)")
                #expect(v["ready"] as? String == "ready")
                #expect((v["workers"] as? Int ?? 0) >= 1)
                let png = try session.screenshot()
                #expect(png.count > 20_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
                try png.write(to: Self.screenshotURL("dashboard.png"))

                // The self-test, in the same browser: a credential, ICE from each URL, a relayed call.
                try session.navigate("http://127.0.0.1:8478/selftest")
                let result = try session.waitFor("return document.body.dataset.result || null;", timeout: 90) { $0 as? String != nil }
                let summary = try session.execute("return window.ternSelfTest;", []) as? [String: Any]
                print("self-test: \(result ?? "none") \(summary ?? [:])")
                #expect(result as? String == "pass", "self-test: \(summary ?? [:])")
                let call = summary?["call"] as? [String: Any]
                #expect((call?["framesReceived"] as? Int ?? 0) >= 30)
                #expect(call?["localCandidateType"] as? String == "relay" && call?["remoteCandidateType"] as? String == "relay")
                let gathered = summary?["urls"] as? [[String: Any]] ?? []
                #expect(gathered.count == urls.count)
                for g in gathered where (g["url"] as? String)?.hasPrefix("turn") == true {
                    #expect((g["types"] as? [String])?.contains("relay") == true, "\(g)")
                }
                let selftest = try session.screenshot()
                #expect(selftest.count > 20_000)
                try selftest.write(to: Self.screenshotURL("selftest.png"))
            }
            // Live allocations make SIGTERM drain (up to 30 s); a second SIGTERM stops at once.
            kill(tern.process.processIdentifier, SIGTERM)
            #expect(tern.waitForLog("draining", timeout: 5))
            #expect(tern.terminate() == 0)
            #expect(tern.stderr.contains("stopped"))
            #expect(tern.stderr.components(separatedBy: "tern listening").count == 2, "start-up logged once")
        }
    }
}
