import STUN
import Testing
@testable import TernCore

/// The limits Allocate checks before opening anything (RFC 8656 section 7.2: 486 Allocation Quota
/// Reached, 508 Insufficient Capacity), and that ending an allocation gives its share back.
@Suite("Allocation quotas and rates over the in-memory relays")
struct QuotaTests {
    @Test("486 past the per-user quota, counted; other users are not affected")
    func perUser() {
        let h = TurnHarness(limits: { $0.allocationsPerUser = 2 })
        #expect(h.client("198.51.100.1:1").allocate().isSuccess)
        #expect(h.client("198.51.100.2:1").allocate().isSuccess)
        #expect(h.client("198.51.100.3:1").allocate().code == 486)
        #expect(h.client("198.51.100.3:2", username: "bob").allocate().isSuccess)
        #expect(h.handler.turnCounters.refusedUserQuota == 1)
        #expect(h.relays.openCount == 3)
    }

    @Test("486 past the per-IP quota, whoever the user")
    func perIP() {
        let h = TurnHarness(limits: { $0.allocationsPerIP = 2 })
        #expect(h.client("198.51.100.1:1").allocate().isSuccess)
        #expect(h.client("198.51.100.1:2", username: "bob").allocate().isSuccess)
        #expect(h.client("198.51.100.1:3").allocate().code == 486)
        #expect(h.client("198.51.100.2:1").allocate().isSuccess)
        #expect(h.handler.turnCounters.refusedIPQuota == 1)
    }

    @Test("486 past the rate of new allocations per IP; the next second admits again")
    func rate() {
        let h = TurnHarness(limits: { $0.allocationRatePerIP = 3 })
        for port in 1...3 { #expect(h.client("198.51.100.1:\(port)").allocate().isSuccess) }
        #expect(h.client("198.51.100.1:4").allocate().code == 486)
        #expect(h.handler.turnCounters.refusedRate == 1)
        h.advance(by: 1)
        #expect(h.client("198.51.100.1:5").allocate().isSuccess)
    }

    @Test("508 past the server's total, shared by every worker's handler")
    func total() {
        let shared = SharedTurnState()
        let one = TurnHarness(shared: shared, limits: { $0.allocationsTotal = 2 })
        let two = TurnHarness(shared: shared, limits: { $0.allocationsTotal = 2 })
        #expect(one.client("198.51.100.1:1").allocate().isSuccess)
        #expect(two.client("198.51.100.2:1").allocate().isSuccess)
        #expect(one.client("198.51.100.3:1").allocate().code == 508)
        #expect(two.client("198.51.100.4:1").allocate().code == 508)
        #expect(one.handler.turnCounters.refusedTotal + two.handler.turnCounters.refusedTotal == 2)
    }

    @Test("508 when no relay port is free; the refused Allocate keeps no quota")
    func portsExhausted() {
        let h = TurnHarness(ports: 50_000...50_001, limits: { $0.allocationsPerUser = 3 })
        let first = h.client("198.51.100.1:1")
        #expect(first.allocate().isSuccess)
        #expect(h.client("198.51.100.1:2").allocate().isSuccess)
        #expect(h.client("198.51.100.1:3").allocate().code == 508)
        #expect(h.turn.shared.allocations(of: "alice") == 2)
        #expect(first.request(.refresh, [.lifetime(0)]).isSuccess)
        #expect(h.client("198.51.100.1:4").allocate().isSuccess)
    }

    @Test("Quotas are given back when allocations expire")
    func givenBackAtExpiry() {
        let h = TurnHarness(limits: { $0.allocationsPerUser = 1; $0.allocationsPerIP = 1 })
        #expect(h.client("198.51.100.1:1").allocate().isSuccess)
        #expect(h.client("198.51.100.1:2").allocate().code == 486)
        h.advance(by: 600)
        #expect(h.handler.allocations.count == 0)
        #expect(h.turn.shared.allocations(of: "alice") == 0)
        #expect(h.relays.openCount == 0)
        #expect(h.client("198.51.100.1:3").allocate().isSuccess)
    }
}
