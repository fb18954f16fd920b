import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import STUN
@testable import TernAdmin
import TernCore
import Testing
@testable import TernIO

/// One HTTP answer, decoded for the assertions below.
struct AdminAnswer {
    var status: Int
    var text: String
    var contentType: String
    var json: Any? { try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) }
    var object: [String: Any] { json as? [String: Any] ?? [:] }
}

func adminRequest(_ http: any TestClientProtocol, _ uri: String, method: HTTPRequest.Method = .get,
                  token: String? = nil, body: String? = nil) async throws -> AdminAnswer {
    var headers: HTTPFields = [:]
    if let token { headers[.authorization] = "Bearer \(token)" }
    if body != nil { headers[.contentType] = "application/json" }
    return try await http.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }) { r in
        AdminAnswer(status: Int(r.status.code), text: String(buffer: r.body), contentType: r.headers[.contentType] ?? "")
    }
}

/// Prometheus text lines `name{labels} value` as a dictionary (comments skipped).
func prometheusSamples(_ text: String) -> [String: Double] {
    var out: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let v = Double(line[line.index(after: space)...]) else { continue }
        out[String(line[..<space])] = v
    }
    return out
}

/// Reads a nested JSON value by keys (`["relayed", "clientToPeer", "packets"]`).
func jsonValue(_ object: Any?, _ path: [String]) -> Any? {
    var v = object
    for k in path { v = (v as? [String: Any])?[k] }
    return v
}

func jsonInt(_ object: Any?, _ path: String...) -> Int? {
    (jsonValue(object, path) as? NSNumber)?.intValue
}

let quietAdminLogger: Logger = {
    var l = Logger(label: "tern.admin.test")
    l.logLevel = .warning
    return l
}()

/// An allocation with a channel to `peer`, relaying `count` ChannelData messages of `size` bytes.
func relayThroughChannel(_ client: TurnTestClient, peer: TestPeer, count: Int, size: Int = 100) -> Int {
    var received = 0
    for i in 0..<count {
        client.sendChannelData(0x4000, [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: size))
        if let got = peer.receive(), got.data.count == size { received += 1 }
    }
    return received
}

@Suite("Admin endpoint (Hummingbird) over a real TURN server")
struct AdminEndpointTests {
    @Test("Stats, metrics, allocations and users move while the allocation lives; DELETE ends it and closes its relay socket")
    func liveFiguresAndDelete() async throws {
        let (server, address) = try startTurnServer()
        defer { server.stop() }
        let admin = try AdminServer(settings: AdminConfig(port: 0), backend: ServerAdminBackend(server), logger: quietAdminLogger)
        let session = try ChannelSession(server: address)
        let (client, peer, relayed) = (session.client, session.peer, session.relayed)
        defer { peer.close() }
        #expect(relayThroughChannel(client, peer: peer, count: 5) == 5)

        try await admin.application().test(.router) { http in
            let stats = try await adminRequest(http, "/stats")
            #expect(stats.status == 200)
            #expect(stats.contentType == "application/json")
            #expect(jsonInt(stats.json, "allocations", "active") == 1)
            #expect(jsonInt(stats.json, "relayed", "clientToPeer", "packets") == 5)
            #expect(jsonInt(stats.json, "relayed", "clientToPeer", "bytes") == 500)
            #expect(jsonInt(stats.json, "requests", "allocate", "success") == 1)
            #expect(jsonInt(stats.json, "requests", "allocate", "401") == 1)
            #expect(jsonInt(stats.json, "requests", "channel_bind", "success") == 1)
            #expect(jsonInt(stats.json, "authFailures", "challenged") == 1)
            #expect(jsonInt(stats.json, "relayPorts", "inUse") == 1)
            #expect((stats.object["workers"] as? [Any])?.count == 2)
            #expect(stats.object["version"] as? String == ternVersion)
            #expect(stats.object["ready"] as? Bool == true)

            var metrics = try await adminRequest(http, "/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.contentType.hasPrefix("text/plain; version=0.0.4"))
            var samples = prometheusSamples(metrics.text)
            #expect(samples[#"tern_allocations_active{transport="udp",family="ipv4"}"#] == 1)
            #expect(samples[#"tern_allocations_active{transport="tcp",family="ipv4"}"#] == 0)
            #expect(samples[#"tern_relayed_packets_total{direction="client_to_peer"}"#] == 5)
            #expect(samples[#"tern_requests_total{method="allocate",result="success"}"#] == 1)
            #expect(samples[#"tern_relay_ports{state="in_use"}"#] == 1)
            #expect(samples[#"tern_relay_ports{state="free"}"#] == Double(1000 * 2 - 1))
            #expect(!metrics.text.contains("user=\""), "per-user labels are off by default")

            // Live: more traffic on the same allocation shows at the next scrape, both ways.
            #expect(relayThroughChannel(client, peer: peer, count: 3) == 3)
            for i in 0..<2 { peer.send([UInt8](repeating: UInt8(i), count: 40), to: relayed) }
            for _ in 0..<2 { #expect(client.receiveRelayed()?.data.count == 40) }
            metrics = try await adminRequest(http, "/metrics")
            samples = prometheusSamples(metrics.text)
            #expect(samples[#"tern_relayed_packets_total{direction="client_to_peer"}"#] == 8)
            #expect(samples[#"tern_relayed_packets_total{direction="peer_to_client"}"#] == 2)
            #expect(samples[#"tern_relayed_bytes_total{direction="peer_to_client"}"#] == 80)

            let list = try await adminRequest(http, "/allocations")
            #expect(list.status == 200)
            let items = try #require(list.object["allocations"] as? [[String: Any]])
            #expect(items.count == 1)
            let item = try #require(items.first)
            let id = try #require(item["id"] as? String)
            #expect(item["user"] as? String == "alice")
            #expect(item["transport"] as? String == "udp")
            #expect(item["relayed"] as? [String] == ["\(relayed)"])
            #expect(item["permissions"] as? [String] == ["127.0.0.1"])
            #expect(((item["channels"] as? [[String: Any]])?.first?["peer"] as? String) == "\(peer.address)")
            let clientAddress = try #require(item["client"] as? String)
            #expect(try await adminRequest(http, "/allocations?user=alice").object["count"] as? Int == 1)
            #expect(try await adminRequest(http, "/allocations?user=bob").object["count"] as? Int == 0)
            #expect(try await adminRequest(http, "/allocations?client=127.0.0.1").object["count"] as? Int == 1)
            #expect(try await adminRequest(http, "/allocations?client=\(clientAddress)").object["count"] as? Int == 1)
            #expect(try await adminRequest(http, "/allocations?client=192.0.2.1").object["count"] as? Int == 0)

            let one = try await adminRequest(http, "/allocations/\(id)")
            #expect(one.status == 200)
            #expect(jsonInt(one.json, "relayedTraffic", "clientToPeer", "packets") == 8)
            #expect(try await adminRequest(http, "/allocations/999999").status == 404)
            #expect(try await adminRequest(http, "/allocations/not-a-number").status == 404)

            let user = try await adminRequest(http, "/users/alice")
            #expect(user.status == 200)
            #expect((user.object["allocations"] as? [Any])?.count == 1)
            #expect(jsonInt(user.json, "relayed", "clientToPeer", "bytes") == 800)
            #expect((try await adminRequest(http, "/users/bob").object["allocations"] as? [Any])?.count == 0)

            // DELETE: gone at once, relay socket closed, the client's next Refresh is 437.
            let relayFDs = server.workers.flatMap { w in w.queue.sync { Array(w.relays.keys) } }
            #expect(relayFDs.count == 1)
            let deleted = try await adminRequest(http, "/allocations/\(id)", method: .delete)
            #expect(deleted.status == 200)
            #expect(deleted.object["deleted"] as? String == id)
            // The socket is closed in its source's cancel handler, which runs right after.
            #expect(eventually { server.workers.allSatisfy { w in w.queue.sync { w.relays.isEmpty } } })
            #expect(try await adminRequest(http, "/allocations/\(id)").status == 404)
            #expect(try await adminRequest(http, "/allocations/\(id)", method: .delete).status == 404)
            #expect(try client.request(.refresh, [.lifetime(600)]).errorCode?.code == 437)
            samples = prometheusSamples(try await adminRequest(http, "/metrics").text)
            #expect(samples[#"tern_allocations_active{transport="udp",family="ipv4"}"#] == 0)
            #expect(samples[#"tern_allocations_ended_total{reason="admin"}"#] == 1)
            #expect(samples[#"tern_relay_ports{state="in_use"}"#] == 0)
            // The user's traffic outlives the allocation.
            #expect(jsonInt(try await adminRequest(http, "/users/alice").json, "relayed", "clientToPeer", "packets") == 8)
        }
    }

    @Test("Per-user series only when admin.perUserMetrics is on")
    func perUserMetrics() async throws {
        let (server, address) = try startTurnServer()
        defer { server.stop() }
        let admin = try AdminServer(settings: AdminConfig(port: 0, perUserMetrics: true), backend: ServerAdminBackend(server),
                                    logger: quietAdminLogger)
        let session = try ChannelSession(server: address, username: "bob", password: "builder")
        let (client, peer) = (session.client, session.peer)
        defer { peer.close() }
        #expect(relayThroughChannel(client, peer: peer, count: 4, size: 50) == 4)
        try await admin.application().test(.router) { http in
            let samples = prometheusSamples(try await adminRequest(http, "/metrics").text)
            #expect(samples[#"tern_user_allocations_active{user="bob"}"#] == 1)
            #expect(samples[#"tern_user_relayed_bytes_total{user="bob",direction="client_to_peer"}"#] == 200)
            let stats = try await adminRequest(http, "/stats")
            #expect(jsonInt(stats.json, "users", "bob", "relayed", "clientToPeer", "bytes") == 200)
        }
    }

    @Test("With admin.token every data route wants the bearer token: none or a wrong one gets 401 and nothing else (real HTTP listener)")
    func bearerToken() async throws {
        let (server, _) = try startTurnServer()
        defer { server.stop() }
        let admin = try AdminServer(settings: AdminConfig(port: 0, token: "correct-horse-battery-staple"), backend: ServerAdminBackend(server),
                                    logger: quietAdminLogger)
        try await admin.application().test(.live) { http in
            // /healthz and /readyz are the exception (ReadinessTests): probes carry no token.
            for path in ["/metrics", "/stats", "/allocations", "/allocations/1", "/users/alice"] {
                // The token followed by 256 extra bytes was once accepted (a length difference
                // truncated to 8 bits); the comparison is now over SHA-256 digests.
                let tooLong = ["correct-horse-battery-staple" + String(repeating: "x", count: 256),
                               "correct-horse-battery-staple" + String(repeating: "y", count: 512)]
                for token in [nil, "wrong", "correct-horse-battery-stapl", "correct-horse-battery-staplee", ""] + tooLong as [String?] {
                    let r = try await adminRequest(http, path, token: token)
                    #expect(r.status == 401, "\(path) with \(token ?? "no token")")
                    #expect(r.text == #"{"error":"unauthorized"}"#, "\(path): nothing but the refusal")
                }
            }
            #expect(try await adminRequest(http, "/allocations/1", method: .delete, token: "wrong").status == 401)
            #expect(try await adminRequest(http, "/users/alice/allocations", method: .delete, token: "wrong").status == 401)
            #expect(try await adminRequest(http, "/healthz", token: "correct-horse-battery-staple").status == 200)
            #expect(try await adminRequest(http, "/stats", token: "correct-horse-battery-staple").status == 200)
            #expect(try await adminRequest(http, "/metrics", token: "correct-horse-battery-staple").text.contains("tern_build_info"))
        }
    }

    @Test("Without a token the endpoint refuses any address but loopback, and says why")
    func loopbackOnlyWithoutToken() throws {
        let (server, _) = try startTurnServer()
        defer { server.stop() }
        for address in ["0.0.0.0", "192.0.2.1", "::", "2001:db8::1"] {
            let settings = AdminConfig(address: IPAddress(address)!, port: 0)
            #expect(throws: AdminError.self) {
                _ = try AdminServer(settings: settings, backend: ServerAdminBackend(server), logger: quietAdminLogger)
            }
            do {
                _ = try AdminServer(settings: settings, backend: ServerAdminBackend(server), logger: quietAdminLogger)
            } catch {
                #expect(error.description.contains("needs admin.token"))
            }
            // With a token any address is allowed.
            _ = try AdminServer(settings: AdminConfig(address: IPAddress(address)!, port: 0, token: "0123456789abcdef"),
                                backend: ServerAdminBackend(server), logger: quietAdminLogger)
        }
        // A token shorter than 16 bytes is refused on any address, with the reason.
        do {
            _ = try AdminServer(settings: AdminConfig(port: 0, token: "short-token"), backend: ServerAdminBackend(server),
                                logger: quietAdminLogger)
            Issue.record("a 11-byte token was accepted")
        } catch {
            #expect(error.description.contains("at least 16"))
        }
        for address in ["127.0.0.1", "127.0.0.53", "::1"] {
            _ = try AdminServer(settings: AdminConfig(address: IPAddress(address)!, port: 0), backend: ServerAdminBackend(server),
                                logger: quietAdminLogger)
        }
    }
}

@Suite("Admin endpoint: credentials and pages")
struct AdminCredentialsTests {
    @Test("POST /credentials signs with the first secret; the credential allocates on the real server; bad bodies get 400, no secret 409; the token is required")
    func credentials() async throws {
        let (server, address) = try startTurnServer()
        defer { server.stop() }
        let issuer = CredentialIssuer(secret: testSecrets[0], urls: ["turn:\(address)?transport=udp"])
        let token = "0123456789abcdef-token"
        let admin = try AdminServer(settings: AdminConfig(port: 0, token: token),
                                    backend: ServerAdminBackend(server, credentials: issuer), logger: quietAdminLogger)
        try await admin.application().test(.router) { http in
            #expect(try await adminRequest(http, "/credentials", method: .post).status == 401)
            let answer = try await adminRequest(http, "/credentials", method: .post, token: token, body: #"{"user": "carol", "ttl": 600}"#)
            #expect(answer.status == 200)
            let o = answer.object
            let username = try #require(o["username"] as? String)
            let password = try #require(o["credential"] as? String)
            #expect(username.hasSuffix(":carol"))
            #expect(o["urls"] as? [String] == ["turn:\(address)?transport=udp"])
            #expect((o["expires"] as? String)?.hasSuffix("Z") == true)
            // The credential works against the server.
            let client = try TurnTestClient(server: address, username: username, password: password)
            #expect(try client.allocate().type.messageClass == .successResponse)
            // An empty body: defaults (a day, a random user).
            let d = try await adminRequest(http, "/credentials", method: .post, token: token)
            #expect(d.status == 200)
            #expect((d.object["username"] as? String)?.contains(":user-") == true)
            for bad in [#"[1]"#, #"{"ttl": "60"}"#, #"{"ttl": 1.5}"#, #"{"ttl": 0}"#, #"{"ttl": 9999999}"#, #"{"user": ""}"#,
                        #"{"user": 7}"#, #"{"secret": "x"}"#, "not json"] {
                let r = try await adminRequest(http, "/credentials", method: .post, token: token, body: bad)
                #expect(r.status == 400, "\(bad): \(r.status) \(r.text)")
                #expect(r.object["error"] is String, "\(bad)")
            }
        }
        // Without a secret: 409 with a message.
        let none = try AdminServer(settings: AdminConfig(port: 0), backend: ServerAdminBackend(server), logger: quietAdminLogger)
        try await none.application().test(.router) { http in
            let r = try await adminRequest(http, "/credentials", method: .post)
            #expect(r.status == 409)
            #expect((r.object["error"] as? String)?.contains("auth.secrets") == true)
        }
    }

    @Test("GET / serves the dashboard page, without the token even when one is set, with a restrictive CSP; the data routes still need it")
    func dashboardPage() async throws {
        let (server, _) = try startTurnServer()
        defer { server.stop() }
        let admin = try AdminServer(settings: AdminConfig(port: 0, token: "0123456789abcdef-token"), backend: ServerAdminBackend(server),
                                    logger: quietAdminLogger)
        try await admin.application().test(.router) { http in
            for (path, title) in [("/", "Tern dashboard"), ("/selftest", "Tern self-test")] {
                let page = try await adminRequest(http, path)
                #expect(page.status == 200, "\(path)")
                #expect(page.contentType.hasPrefix("text/html"))
                #expect(page.text.contains("<title>\(title)</title>"))
                #expect(!page.text.contains("http://") && !page.text.contains("https://"), "\(path): no external asset")
            }
            #expect(try await adminRequest(http, "/stats").status == 401)
        }
    }
}

/// An `AdminBackend` with nothing behind it: no server, no allocations.
final class EmptyAdminBackend: AdminBackend {
    func snapshot(perUser: Bool) async -> ServerSnapshot { ServerSnapshot() }
    func allocations(user: String?, client: String?) async -> [AllocationInfo] { [] }
    func allocation(id: String) async -> AllocationInfo? { nil }
    func deleteAllocation(id: String) async -> Bool { false }
    func user(_ name: String) async -> UserInfo { UserInfo(user: name, allocations: [], relayed: RelayedTraffic()) }
    func deleteAllocations(ofUser name: String) async -> Int { 0 }
    func issueCredential(user: String?, ttl: Int?) async -> Result<IceServer, CredentialIssuer.Problem> { .failure(.noSecret) }
    var isReady: Bool { true }
}

/// A `LogHandler` that keeps what it is given, for the assertions.
final class RecordingLogHandler: LogHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var records: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        lock.lock()
        defer { lock.unlock() }
        records.append((level, message.description, metadata ?? [:]))
    }

    var logged: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] {
        lock.lock()
        defer { lock.unlock() }
        return records
    }
}

@Suite("Admin endpoint: the route table and its JSON answers, without a TURN server")
struct AdminRouteTableTests {
    @Test("Every route in the one table is registered: each answers from its own handler, never the router's bare 404")
    func everyListedRouteIsServed() async throws {
        let admin = try AdminServer(settings: AdminConfig(port: 0), backend: EmptyAdminBackend(), logger: quietAdminLogger)
        #expect(AdminServer.routes.count == AdminServer.table.count)
        #expect(Set(AdminServer.routes.map { "\($0.method) \($0.path)" }).count == AdminServer.routes.count, "no route twice")
        try await admin.application().test(.router) { http in
            for route in AdminServer.routes {
                // "/allocations/{id}" -> "/allocations/7"
                let uri = route.path.replacingOccurrences(of: #"\{[a-z]+\}"#, with: "7", options: .regularExpression)
                let answer = try await adminRequest(http, uri, method: HTTPRequest.Method(route.method) ?? .get)
                #expect(!answer.contentType.isEmpty, "\(route.method) \(uri): no content type, so no handler ran")
                #expect(!answer.text.isEmpty, "\(route.method) \(uri): empty body")
                if answer.status == 404 {
                    #expect(answer.object["error"] as? String == "no allocation 7", "\(route.method) \(uri)")
                } else if route.path == "/credentials" {
                    #expect(answer.status == 409, "no secret behind the empty backend")
                } else {
                    #expect(answer.status == 200, "\(route.method) \(uri)")
                }
            }
            // A path outside the table is the router's own 404: no handler, no body.
            let unknown = try await adminRequest(http, "/nothing-here")
            #expect(unknown.status == 404)
            #expect(unknown.text.isEmpty)
        }
    }

    @Test("A value that cannot be encoded is answered with 500 and a JSON error, and logged (not 200 with an empty object)")
    func encodeFailureIs500() throws {
        let handler = RecordingLogHandler()
        let logger = Logger(label: "tern.admin.test") { _ in handler }
        // JSONEncoder refuses NaN unless told how to spell it.
        let response = AdminServer.json(["ratio": Double.nan], logger: logger)
        #expect(response.status == .internalServerError)
        #expect(response.headers[.contentType] == "application/json")
        let (status, data) = AdminServer.encoded(["ratio": Double.nan], status: .ok, logger: logger)
        #expect(status == .internalServerError)
        let body = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(body.keys.sorted() == ["error"], "the documented Error schema: one string")
        #expect((body["error"] as? String)?.contains("could not be encoded") == true)
        // A value that encodes keeps its status.
        let (okStatus, okData) = AdminServer.encoded(["status": "ok"], status: .ok, logger: logger)
        #expect(okStatus == .ok)
        #expect(String(decoding: okData, as: UTF8.self) == #"{"status":"ok"}"#)
        #expect(handler.logged.count == 2, "one error line per failed answer")
        #expect(handler.logged.first?.level == .error)
        #expect(handler.logged.first?.message.contains("encode") == true)
    }
}
