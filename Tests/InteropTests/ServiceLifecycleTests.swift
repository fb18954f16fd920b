import Foundation
import STUN
import Testing

/// `tern serve` run as a service: SIGHUP re-reads the config file, SIGTERM drains. coturn's
/// turnutils_uclient keeps relaying through both, and must lose nothing.
extension HeavyInteropTests {
    @Suite("tern serve: reload on SIGHUP and drain on SIGTERM, with coturn's client relaying", .serialized)
    struct ServiceLifecycleTests {
        typealias Tools = TurnClientInteropTests

        static func config(users: [String: String], secrets: [String], extraListener: Bool = false, drainSeconds: Int = 30) -> String {
            let userList = users.map { "\"\($0.key)\": \"\($0.value)\"" }.joined(separator: ", ")
            let secretList = secrets.map { "\"\($0)\"" }.joined(separator: ", ")
            return """
            {
              "realm": "tern.test",
              "workers": 2,
              "listeners": [
                {"transport": "udp", "address": "127.0.0.1", "port": 0}\(extraListener ? #", {"transport": "udp", "address": "127.0.0.2", "port": 0}"# : "")
              ],
              "relay": {"ipv4": "127.0.0.1", "portRange": [61000, 61999]},
              "auth": {"users": {\(userList)}, "secrets": [\(secretList)]},
              "peers": {"allow": ["127.0.0.0/8"]},
              "admin": {"port": 0},
              "drain": {"timeoutSeconds": \(drainSeconds)}
            }
            """
        }

        /// turnutils_peer on a free port, echoing; killed by the returned closure.
        static func startPeer() throws -> (port: UInt16, stop: () -> Void) {
            let port = Tools.freeUDPPort()
            let peer = try Tools.startPeer(port: port)
            if !peer.ready { peer.stop() }
            try #require(peer.ready, "turnutils_peer does not echo on port \(port)")
            return (port, peer.stop)
        }

        /// Waits (bounded) until the admin endpoint counts relayed client-to-peer packets: a relay is
        /// under way.
        static func waitForRelaying(_ admin: TransportAddress, within seconds: TimeInterval = 10) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if let packets = adminStat(admin, ["relayed", "clientToPeer", "packets"]), packets > 0 { return true }
                Thread.sleep(forTimeInterval: 0.02)
            }
            return false
        }

        /// uclient relaying `messages` per client (2 clients, 20 ms apart) through `server`.
        static func uclient(_ credentials: [String], server: TransportAddress, peerPort: UInt16, messages: Int) throws -> (status: Int32, output: String) {
            try runTool(Tools.uclient, credentials + ["-e", "127.0.0.1", "-p", "\(server.port)", "-r", "\(peerPort)",
                                                     "-n", "\(messages)", "-m", "2", "-l", "120", "-z", "20", "\(server.ip)"],
                        timeout: 60)
        }

        /// Runs `body` on another thread; the returned closure waits for its result.
        static func inBackground<T>(_ body: @escaping () throws -> T) -> () throws -> T {
            let box = ResultBox<T>()
            let thread = Thread { box.set(Result { try body() }) }
            thread.start()
            return { try box.wait().get() }
        }

        @Test("SIGHUP: a new user, a new secret and a new listener work at once, a relay in progress loses nothing; a broken config changes nothing and says so in STATUS=")
        func reload() throws {
            let notify = try NotifySocket()
            let tern = try TernProcess(config: Self.config(users: ["alice": "wonderland"], secrets: ["s3cret"]),
                                       environment: ["NOTIFY_SOCKET": notify.path])
            defer { _ = tern.terminate() }
            #expect(tern.waitForLog("tern listening"), "\(tern.stderr)")
            _ = notify.collect(until: { $0.contains("READY=1") })
            let configURL = try #require(tern.configURL)
            let server = try #require(tern.boundListeners().first?.address)
            let admin = try #require(tern.adminAddress(), "\(tern.stderr)")
            let (peerPort, stopPeer) = try Self.startPeer()
            defer { stopPeer() }

            // Before: carol and the new secret are unknown.
            let before = try Self.uclient(["-u", "carol", "-w", "c4rol"], server: server, peerPort: peerPort, messages: 2)
            #expect(Tools.summary(before.output) == nil || before.status != 0, "carol got through before the reload: \(before.output.suffix(800))")

            // alice relays across the reload: 100 messages per client, 20 ms apart (about 2 s).
            let running = Self.inBackground {
                try Self.uclient(["-u", "alice", "-w", "wonderland"], server: server, peerPort: peerPort, messages: 100)
            }
            #expect(Self.waitForRelaying(admin), "alice's relay did not start")
            try Self.config(users: ["alice": "wonderland", "carol": "c4rol"], secrets: ["s3cret", "n3w-secret"], extraListener: true)
                .write(to: configURL, atomically: true, encoding: .utf8)
            kill(tern.process.processIdentifier, SIGHUP)
            #expect(tern.waitForLog("reload: done"), "\(tern.stderr)")
            let reloaded = notify.collect(until: { $0.contains("READY=1") }, timeout: 5)
            #expect(reloaded.contains { $0.hasPrefix("RELOADING=1") }, "\(reloaded)")
            #expect(reloaded.last?.contains("STATUS=serving: 2 listeners") == true, "\(reloaded)")
            let alice = try running()
            let aliceSummary = try #require(Tools.summary(alice.output), "\(alice.output.suffix(1500))")
            #expect(aliceSummary.sent >= 200)
            #expect(aliceSummary.lost == 0, "alice lost packets across the reload: \(alice.output.suffix(1500))")

            // After: carol on the new listener, and a REST user with the new secret.
            let addedLine = try #require(tern.stderr.split(separator: "\n").first { $0.contains("reload: listener added") })
            let added = try #require(addedLine.range(of: "udp ").flatMap { TransportAddress(String(addedLine[$0.upperBound...].prefix { $0 != " " })) })
            #expect(added.ip == IPAddress("127.0.0.2"))
            let carol = try Self.uclient(["-u", "carol", "-w", "c4rol"], server: added, peerPort: peerPort, messages: 10)
            #expect(Tools.summary(carol.output)?.lost == 0, "\(carol.output.suffix(1500))")
            #expect((Tools.summary(carol.output)?.sent ?? 0) >= 20)
            let dave = try Self.uclient(["-W", "n3w-secret", "-u", "dave"], server: server, peerPort: peerPort, messages: 10)
            #expect(Tools.summary(dave.output)?.lost == 0, "\(dave.output.suffix(1500))")

            // A config that does not parse: nothing changes, the log and STATUS= say why.
            try "{ \"listeners\": [".write(to: configURL, atomically: true, encoding: .utf8)
            kill(tern.process.processIdentifier, SIGHUP)
            #expect(tern.waitForLog("reload: failed, nothing changed"), "\(tern.stderr)")
            let failed = notify.collect(until: { $0.contains("READY=1") }, timeout: 5)
            #expect(failed.last?.contains("reload failed, old config kept") == true, "\(failed)")
            let stillCarol = try Self.uclient(["-u", "carol", "-w", "c4rol"], server: added, peerPort: peerPort, messages: 5)
            #expect(Tools.summary(stillCarol.output)?.lost == 0, "\(stillCarol.output.suffix(1500))")
        }

        @Test("SIGTERM drains: /readyz turns 503, a new Allocate gets 508, the live relay finishes without loss, exit 0; a second SIGTERM exits at once")
        func drain() throws {
            let tern = try TernProcess(config: Self.config(users: ["alice": "wonderland", "bob": "builder"], secrets: [], drainSeconds: 40))
            defer { _ = tern.terminate() }
            #expect(tern.waitForLog("tern listening"), "\(tern.stderr)")
            let server = try #require(tern.boundListeners().first?.address)
            let admin = try #require(tern.adminAddress(), "\(tern.stderr)")
            #expect(httpRequest(admin, "/readyz")?.status == 200)
            let (peerPort, stopPeer) = try Self.startPeer()
            defer { stopPeer() }

            let running = Self.inBackground {
                try Self.uclient(["-u", "alice", "-w", "wonderland"], server: server, peerPort: peerPort, messages: 100)
            }
            #expect(Self.waitForRelaying(admin), "alice's relay did not start")
            kill(tern.process.processIdentifier, SIGTERM)
            #expect(tern.waitForLog("draining"), "\(tern.stderr)")
            #expect(httpRequest(admin, "/readyz")?.status == 503)
            let refused = try Self.uclient(["-u", "bob", "-w", "builder"], server: server, peerPort: peerPort, messages: 2)
            #expect(Tools.summary(refused.output) == nil || refused.status != 0, "\(refused.output.suffix(800))")
            let stats = try #require(httpRequest(admin, "/stats")?.body)
            #expect(stats.contains(#""refused":{"508":"#), "\(stats.prefix(600))")
            let alice = try running()
            let aliceSummary = try #require(Tools.summary(alice.output), "\(alice.output.suffix(1500))")
            #expect(aliceSummary.sent >= 200)
            #expect(aliceSummary.lost == 0, "alice lost packets during the drain: \(alice.output.suffix(4000)) \(tern.stderr)")
            // uclient leaves its allocations to expire; the operator ends them through the admin API,
            // and the process exits as soon as none is left (long before the 40 s drain timeout).
            #expect(tern.process.isRunning, "exited before its allocations ended: \(tern.stderr.suffix(800))")
            let list = try #require(httpRequest(admin, "/allocations")?.body)
            let ids = (try? JSONSerialization.jsonObject(with: Data(list.utf8)) as? [String: Any])?["allocations"]
                .flatMap { $0 as? [[String: Any]] }?.compactMap { $0["id"] as? String } ?? []
            #expect(!ids.isEmpty, "\(list)")
            for id in ids { #expect(httpRequest(admin, "/allocations/\(id)", method: "DELETE")?.status == 200) }
            let deadline = Date().addingTimeInterval(10)
            while tern.process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            #expect(!tern.process.isRunning, "still running after the drain timeout: \(tern.stderr.suffix(800))")
            if !tern.process.isRunning { #expect(tern.process.terminationStatus == 0) }
            #expect(tern.stderr.contains("drained: no allocations left"), "\(tern.stderr.suffix(800))")

            // A second SIGTERM does not wait.
            let again = try TernProcess(config: Self.config(users: ["alice": "wonderland"], secrets: [], drainSeconds: 60))
            defer { _ = again.terminate() }
            #expect(again.waitForLog("tern listening"), "\(again.stderr)")
            let againServer = try #require(again.boundListeners().first?.address)
            _ = try Self.uclient(["-u", "alice", "-w", "wonderland"], server: againServer, peerPort: peerPort, messages: 2)
            let againAdmin = try #require(again.adminAddress(), "\(again.stderr)")
            kill(again.process.processIdentifier, SIGTERM)
            #expect(again.waitForLog("draining"), "\(again.stderr)")
            // Draining with allocations left: it keeps waiting for them (and still answers the admin API).
            #expect(adminStat(againAdmin, ["allocations", "active"]).map { $0 > 0 } == true,
                    "no allocation left to wait for: \(again.stderr.suffix(800))")
            #expect(httpRequest(againAdmin, "/readyz")?.status == 503)
            #expect(again.process.isRunning, "exited before the drain ended: \(again.stderr.suffix(800))")
            kill(again.process.processIdentifier, SIGTERM)
            let stopBy = Date().addingTimeInterval(5)
            while again.process.isRunning && Date() < stopBy { Thread.sleep(forTimeInterval: 0.02) }
            #expect(!again.process.isRunning)
            #expect(again.stderr.contains("stopping now (second signal)"), "\(again.stderr.suffix(800))")
        }
    }
}

/// A result handed from a background thread, waited for with a lock.
final class ResultBox<T>: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<T, Error>?

    func set(_ r: Result<T, Error>) {
        condition.lock()
        result = r
        condition.broadcast()
        condition.unlock()
    }

    func wait() -> Result<T, Error> {
        condition.lock()
        defer { condition.unlock() }
        while result == nil { condition.wait() }
        return result!
    }
}
