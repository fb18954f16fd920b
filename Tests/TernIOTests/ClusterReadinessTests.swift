import STUN
@testable import TernAdmin
import TernCore
import Testing
@testable import TernIO

@Suite("Cluster: cluster.capacity below limits.allocationsTotal drives /readyz, /stats and the Prometheus gauges")
struct ClusterReadinessTests {
    @Test("capacity 1 of allocationsTotal 10: one allocation makes /readyz 503 and atCapacity; the next Allocate is redirected and counted")
    func capacityBelowTotal() async throws {
        var limits = LimitsConfig()
        limits.allocationsTotal = 10
        let alternate = TransportAddress("127.0.0.2:3478")!
        let (server, address) = try startTurnServer(limits: limits, settings: {
            $0.limits = limits
            $0.cluster = ClusterConfig(alternateServers: [AlternateServer(address: alternate)], capacity: 1)
        })
        defer { server.stop() }
        let token = "0123456789abcdef-token"
        let admin = try AdminServer(settings: AdminConfig(port: 0, token: token), backend: ServerAdminBackend(server),
                                    logger: quietAdminLogger)
        try await admin.application().test(.router) { http in
            func metrics() async throws -> [String: Double] {
                prometheusSamples(try await adminRequest(http, "/metrics", token: token).text)
            }
            #expect(try await adminRequest(http, "/readyz").status == 200)
            var samples = try await metrics()
            #expect(samples["tern_allocations_capacity"] == 1)
            #expect(samples["tern_at_capacity"] == 0)
            #expect(samples[#"tern_allocate_redirects_total{reason="capacity"}"#] == 0)

            let alice = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try alice.allocate().type.messageClass == .successResponse)
            #expect(!server.isReady)
            #expect(try await adminRequest(http, "/readyz").status == 503)
            #expect(try await adminRequest(http, "/healthz").status == 200)
            let stats = try await adminRequest(http, "/stats", token: token)
            #expect(stats.object["atCapacity"] as? Bool == true)
            #expect(stats.object["ready"] as? Bool == false)
            #expect(jsonInt(stats.json, "allocations", "capacity") == 1)
            #expect(jsonInt(stats.json, "allocations", "active") == 1)
            samples = try await metrics()
            #expect(samples["tern_allocations_capacity"] == 1)
            #expect(samples["tern_at_capacity"] == 1)

            // Far below allocationsTotal, a second client is sent to the alternate.
            let bob = try TurnTestClient(server: address, username: "bob", password: "builder")
            let redirect = try bob.allocate()
            #expect(redirect.errorCode?.code == 300)
            #expect(redirect.first(.alternateServer) == .alternateServer(alternate))
            #expect(relayedAddresses(redirect).isEmpty)
            samples = try await metrics()
            #expect(samples[#"tern_allocate_redirects_total{reason="capacity"}"#] == 1)
            #expect(samples[#"tern_allocate_redirects_total{reason="drain"}"#] == 0)
            let after = try await adminRequest(http, "/stats", token: token)
            #expect(jsonInt(after.json, "allocations", "redirected", "capacity") == 1)
            #expect(jsonInt(after.json, "allocations", "redirected", "drain") == 0)
            #expect(jsonInt(after.json, "allocations", "active") == 1)

            // Ending the allocation makes room: ready again.
            #expect(try alice.request(.refresh, [.lifetime(0)]).type.messageClass == .successResponse)
            #expect(server.isReady)
            #expect(try await adminRequest(http, "/readyz").status == 200)
            #expect(try await metrics()["tern_at_capacity"] == 0)
        }
    }
}
