import Foundation
import STUN
import Testing

/// Headless Chromium (through chromedriver) makes a relay-only WebRTC call between two peer
/// connections in one page, through the real `tern` binary on loopback: data channel messages
/// both ways and a fake-camera video stream, with both selected candidate pairs relay/relay.
/// Skipped when chromium/chromedriver are not installed (scripts/test.sh installs them).
extension HeavyInteropTests {
    @Suite("WebRTC in headless Chromium relayed by tern", .serialized, .enabled(if: BrowserHarness.isAvailable))
    struct BrowserRelayTests {
        static let config = """
        {
          "realm": "tern.test",
          "listeners": [{"transport": "udp", "address": "127.0.0.1", "port": 0},
                        {"transport": "tcp", "address": "127.0.0.1", "port": 0}],
          "relay": {"ipv4": "127.0.0.1", "portRange": [64000, 64999]},
          "auth": {"users": {"alice": "wonderland"}, "secrets": ["s3cret"]},
          "peers": {"allow": ["127.0.0.0/8"]}
        }
        """

        /// Starts tern with `config` and returns it with its UDP (or TCP) listener's port.
        static func startTern(transport: String = "udp", config: String = config) throws -> (TernProcess, UInt16) {
            let tern = try TernProcess(config: config)
            guard tern.waitForLog("tern listening") else {
                _ = tern.terminate()
                throw BrowserHarnessError("tern did not start: \(tern.stderr)")
            }
            guard let udp = tern.boundListeners().first(where: { $0.transport == transport }) else {
                _ = tern.terminate()
                throw BrowserHarnessError("tern logged no UDP listener: \(tern.stderr)")
            }
            return (tern, udp.address.port)
        }

        static func iceServers(port: UInt16, username: String, credential: String, transport: String = "udp") throws -> String {
            let server: [String: Any] = ["urls": "turn:127.0.0.1:\(port)?transport=\(transport)", "username": username, "credential": credential]
            return String(decoding: try JSONSerialization.data(withJSONObject: [server]), as: UTF8.self)
        }

        /// The TURN REST API ("shared secret") password: base64(HMAC-SHA1(secret, username)).
        static func restPassword(secret: String, username: String) -> String {
            Data(HMAC.sha1(key: Array(secret.utf8), data: Array(username.utf8))).base64EncodedString()
        }

        static func expectRelayed(_ r: BrowserRelayResult, tern: TernProcess) {
            print("browser relay: data channel open after \(r.dataChannelOpenMs.map { "\(Int($0)) ms" } ?? "never"), "
                  + "\(r.framesDecoded) frames decoded, pairs \(r.localCandidateTypes)/\(r.remoteCandidateTypes)")
            #expect(r.error == nil, "\(r)\ntern log:\n\(tern.stderr)")
            #expect(r.dataChannelOpenMs != nil, "\(r)")
            #expect(r.messagesOK, "\(r)")
            #expect(r.framesDecoded >= 30, "\(r)")
            #expect(r.localCandidateTypes == ["relay", "relay"], "\(r)")
            #expect(r.remoteCandidateTypes == ["relay", "relay"], "\(r)")
            #expect(r.iceCandidateErrors.isEmpty, "\(r)")
        }

        @Test("Static user: data channel and fake-camera video flow relay-to-relay",
              .timeLimit(.minutes(1)))
        func staticUser() throws {
            let (tern, port) = try Self.startTern()
            defer { _ = tern.terminate() }
            let r = try BrowserHarness.runRelayTest(
                iceServers: try Self.iceServers(port: port, username: "alice", credential: "wonderland"), timeout: 30)
            Self.expectRelayed(r, tern: tern)
        }

        @Test("io.offload \"tc\": the call's channels are relayed by the kernel, video and data channel both ways",
              .timeLimit(.minutes(1)))
        func kernelOffload() throws {
            let offloaded = Self.config.replacingOccurrences(
                of: #""peers": {"allow": ["127.0.0.0/8"]}"#,
                with: #""peers": {"allow": ["127.0.0.0/8"]}, "io": {"offload": "tc", "offloadInterfaces": ["lo"]}"#)
            let (tern, port) = try Self.startTern(config: offloaded)
            defer { _ = tern.terminate() }
            guard tern.stderr.contains("relayed in the kernel") else {
                if ProcessInfo.processInfo.environment["CI"] == "true" { Issue.record("io.offload unavailable in CI: \(tern.stderr)") }
                else { print("BrowserRelayTests: offload unavailable here, skipped: \(tern.stderr.suffix(300))") }
                return
            }
            let r = try BrowserHarness.runRelayTest(
                iceServers: try Self.iceServers(port: port, username: "alice", credential: "wonderland"), timeout: 30)
            Self.expectRelayed(r, tern: tern)
            let admin = try #require(tern.adminAddress())
            let toPeer = adminStat(admin, ["offload", "kernel", "relayed_to_peer"]) ?? 0
            let toClient = adminStat(admin, ["offload", "kernel", "relayed_to_client"]) ?? 0
            let relayed = adminStat(admin, ["relayed", "clientToPeer", "packets"]) ?? 0
            print("browser relay with offload: kernel relayed \(toPeer) to peers and \(toClient) to clients of \(relayed) client-to-peer packets; "
                  + "passed: expired \(adminStat(admin, ["offload", "kernel", "passed_expired"]) ?? -1), "
                  + "length \(adminStat(admin, ["offload", "kernel", "passed_length"]) ?? -1), route \(adminStat(admin, ["offload", "kernel", "passed_route"]) ?? -1)")
            // Two relay-to-relay legs each way: the video's packets (30+ frames) went through the kernel,
            // and /stats counts them with what user space relayed.
            #expect(toPeer >= 100 && toClient >= 100, "to peer \(toPeer), to client \(toClient)")
            #expect(relayed >= toPeer)
        }

        @Test("TURN over TCP (?transport=tcp): data channel and video flow relay-to-relay",
              .timeLimit(.minutes(1)))
        func overTCP() throws {
            let (tern, port) = try Self.startTern(transport: "tcp")
            defer { _ = tern.terminate() }
            let r = try BrowserHarness.runRelayTest(
                iceServers: try Self.iceServers(port: port, username: "alice", credential: "wonderland", transport: "tcp"), timeout: 30)
            Self.expectRelayed(r, tern: tern)
        }

        @Test("TURN over TLS (turns:) with a certificate Chromium trusts through an NSS database",
              .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/certutil")), .timeLimit(.minutes(1)))
        func overTLS() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tern-turns-\(UUID().uuidString)")
            let nssdb = dir.appendingPathComponent(".pki/nssdb")
            try FileManager.default.createDirectory(at: nssdb, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let cert = dir.appendingPathComponent("cert.pem").path, key = dir.appendingPathComponent("key.pem").path
            // The URL names 127.0.0.1, so the certificate must too (subjectAltName IP).
            let made = try runTool("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                                        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                                                        "-addext", "subjectAltName=IP:127.0.0.1",
                                                        "-addext", "basicConstraints=critical,CA:TRUE",
                                                        "-keyout", key, "-out", cert])
            #expect(made.status == 0, "\(made.output)")
            #expect(try runTool("/usr/bin/certutil", ["-d", "sql:\(nssdb.path)", "-N", "--empty-password"]).status == 0)
            let added = try runTool("/usr/bin/certutil", ["-d", "sql:\(nssdb.path)", "-A", "-t", "CP,,", "-n", "tern-test", "-i", cert])
            #expect(added.status == 0, "\(added.output)")
            let config = Self.config.replacingOccurrences(of: #""listeners": ["#, with: #""tls": {"certificate": "\#(cert)", "privateKey": "\#(key)"}, "listeners": [{"transport": "tls", "address": "127.0.0.1", "port": 0}, "#)
            let tern = try TernProcess(config: config)
            defer { _ = tern.terminate() }
            #expect(tern.waitForLog("tern listening"), "\(tern.stderr)")
            let port = try #require(tern.boundListeners().first { $0.transport == "tls" }?.address.port)
            let server: [String: Any] = ["urls": "turns:127.0.0.1:\(port)?transport=tcp", "username": "alice", "credential": "wonderland"]
            let ice = String(decoding: try JSONSerialization.data(withJSONObject: [server]), as: UTF8.self)
            let r = try BrowserHarness.runRelayTest(iceServers: ice, timeout: 30, home: dir.path)
            Self.expectRelayed(r, tern: tern)
        }

        @Test("Shared-secret (TURN REST) credentials: data channel and video flow relay-to-relay",
              .timeLimit(.minutes(1)))
        func sharedSecret() throws {
            let (tern, port) = try Self.startTern()
            defer { _ = tern.terminate() }
            let username = "\(Int(Date().timeIntervalSince1970) + 3600):bob"
            let password = Self.restPassword(secret: "s3cret", username: username)
            let r = try BrowserHarness.runRelayTest(
                iceServers: try Self.iceServers(port: port, username: username, credential: password), timeout: 30)
            Self.expectRelayed(r, tern: tern)
        }

        @Test("Wrong password: icecandidateerror 401 and no connection",
              .timeLimit(.minutes(1)))
        func wrongPassword() throws {
            let (tern, port) = try Self.startTern()
            defer { _ = tern.terminate() }
            let started = Date()
            let r = try BrowserHarness.runRelayTest(
                iceServers: try Self.iceServers(port: port, username: "alice", credential: "not-the-password"),
                timeout: 20, expectConnection: false)
            #expect(r.error == nil, "\(r)\ntern log:\n\(tern.stderr)")
            #expect(r.iceCandidateErrors.contains { $0.code == 401 }, "\(r)")
            #expect(r.iceCandidateErrors.allSatisfy { $0.url.hasPrefix("turn:127.0.0.1:\(port)") }, "\(r)")
            #expect(r.dataChannelOpenMs == nil, "\(r)")
            #expect(r.candidateCounts.allSatisfy { $0 == 0 }, "no relay candidate with a wrong password: \(r)")
            #expect(Date().timeIntervalSince(started) < 15, "the failure is reported without waiting for the timeout")
        }

    }
}
