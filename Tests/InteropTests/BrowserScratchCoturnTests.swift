// SCRATCH — delete before handing over. Validates BrowserHarness against coturn.
import Foundation
import STUN
import Testing

@Suite("Browser scratch: coturn", .serialized, .enabled(if: BrowserHarness.isAvailable))
struct BrowserScratchCoturnTests {
    static func startCoturn(port: Int, extra: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/turnserver")
        p.arguments = ["-n", "--listening-ip=127.0.0.1", "--listening-port=\(port)", "--relay-ip=127.0.0.1",
                       "--min-port=50200", "--max-port=50300", "--realm=tern.test", "--allow-loopback-peers",
                       "--no-cli", "--no-tls", "--no-dtls", "--log-file=stdout", "--verbose"] + extra
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        Thread.sleep(forTimeInterval: 0.7)
        return p
    }
    static func stop(_ p: Process) { if p.isRunning { kill(p.processIdentifier, SIGTERM); p.waitUntilExit() } }

    @Test func staticUser() throws {
        let c = try Self.startCoturn(port: 34781, extra: ["--lt-cred-mech", "--user=alice:wonderland"])
        defer { Self.stop(c) }
        let t0 = Date()
        let r = try BrowserHarness.runRelayTest(iceServers: try BrowserRelayTests.iceServers(port: 34781, username: "alice", credential: "wonderland"))
        print("SCRATCH static (\(Date().timeIntervalSince(t0)) s): \(r)")
        #expect(r.error == nil && r.messagesOK && r.framesDecoded >= 30)
        #expect(r.localCandidateTypes == ["relay", "relay"] && r.remoteCandidateTypes == ["relay", "relay"])
    }

    @Test func sharedSecret() throws {
        let c = try Self.startCoturn(port: 34782, extra: ["--use-auth-secret", "--static-auth-secret=s3cret"])
        defer { Self.stop(c) }
        let username = "\(Int(Date().timeIntervalSince1970) + 3600):bob"
        let t0 = Date()
        let r = try BrowserHarness.runRelayTest(iceServers: try BrowserRelayTests.iceServers(port: 34782, username: username, credential: BrowserRelayTests.restPassword(secret: "s3cret", username: username)))
        print("SCRATCH secret (\(Date().timeIntervalSince(t0)) s): \(r)")
        #expect(r.error == nil && r.messagesOK && r.framesDecoded >= 30)
        #expect(r.localCandidateTypes == ["relay", "relay"] && r.remoteCandidateTypes == ["relay", "relay"])
    }

    @Test func wrongPassword() throws {
        let c = try Self.startCoturn(port: 34783, extra: ["--lt-cred-mech", "--user=alice:wonderland"])
        defer { Self.stop(c) }
        let t0 = Date()
        let r = try BrowserHarness.runRelayTest(iceServers: try BrowserRelayTests.iceServers(port: 34783, username: "alice", credential: "nope"), timeout: 20, expectConnection: false)
        print("SCRATCH wrong (\(Date().timeIntervalSince(t0)) s): \(r)")
        #expect(r.error == nil && r.dataChannelOpenMs == nil)
        #expect(r.iceCandidateErrors.contains { $0.code == 401 })
        #expect(r.candidateCounts.allSatisfy { $0 == 0 })
    }

    @Test func unreachableServerTimesOutFast() throws {
        // nothing listens on 34799: expectConnection true should end with "no relay candidates" not the timeout
        let t0 = Date()
        let r = try BrowserHarness.runRelayTest(iceServers: try BrowserRelayTests.iceServers(port: 34799, username: "alice", credential: "x"), timeout: 25)
        print("SCRATCH unreachable (\(Date().timeIntervalSince(t0)) s): \(r)")
        #expect(r.error != nil)
    }
}
