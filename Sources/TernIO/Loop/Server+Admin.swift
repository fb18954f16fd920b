import Dispatch
import STUN
import TernCore

extension Server {
    /// Live allocations on every worker.
    public var allocationCount: Int { withHandlers { $0.allocations.count }.reduce(0, +) }

    public func allocationInfos(user: String?, client: String?) -> [AllocationInfo] {
        withHandlers { h in
            h.collectFastPath()  // what the kernel relayed, up to now
            return h.allocationInfos(user: user, client: client)
        }.flatMap { $0 }
            .sorted { (UInt64($0.id) ?? 0) < (UInt64($1.id) ?? 0) }
    }

    public func allocationInfo(id: String) -> AllocationInfo? {
        guard let n = UInt64(id) else { return nil }
        return withHandlers { h in
            h.collectFastPath()
            return h.allocationInfo(id: n)
        }.lazy.compactMap { $0 }.first
    }

    public func deleteAllocation(id: String) -> Bool {
        guard let n = UInt64(id) else { return false }
        return withHandlers { $0.deleteAllocation(id: n) }.contains(true)
    }

    /// Ends every live allocation of `name` (a static user, or a TURN REST user by its `<id>`) on
    /// every worker; returns how many ended.
    public func deleteAllocations(ofUser name: String) -> Int {
        withHandlers { $0.deleteAllocations(ofUser: name) }.reduce(0, +)
    }

    public func userInfo(_ name: String) -> UserInfo {
        var traffic = AllocationCounters()
        for (_, c) in withHandlers({ $0.counters(forUser: RequestHandler.userKey(name)) }) { traffic.add(c) }
        return UserInfo(user: name, allocations: allocationInfos(user: name, client: nil), relayed: RelayedTraffic(traffic))
    }
}

/// The admin endpoint's view of a `Server`: each call hops off the caller's thread (an HTTP event
/// loop) to a global queue, which then waits on the workers' queues.
public final class ServerAdminBackend: AdminBackend {
    public let server: Server
    /// Signs `POST /credentials` (nil: no secret, 409).
    public let credentials: CredentialIssuer?

    public init(_ server: Server, credentials: CredentialIssuer? = nil) {
        self.server = server
        self.credentials = credentials
    }

    public func issueCredential(user: String?, ttl: Int?) async -> Result<IceServer, CredentialIssuer.Problem> {
        guard let credentials else { return .failure(.noSecret) }
        let now = UInt64(max(0, Clocks.unixSeconds()))
        return Result { () throws(CredentialIssuer.Problem) in try credentials.issue(user: user, ttl: ttl, now: now) }
    }

    private func off<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { c in
            DispatchQueue.global().async { c.resume(returning: body()) }
        }
    }

    public func snapshot(perUser: Bool) async -> ServerSnapshot {
        await off { [server] in server.snapshot(perUser: perUser) }
    }

    public func allocations(user: String?, client: String?) async -> [AllocationInfo] {
        await off { [server] in server.allocationInfos(user: user, client: client) }
    }

    public func allocation(id: String) async -> AllocationInfo? {
        await off { [server] in server.allocationInfo(id: id) }
    }

    public func deleteAllocation(id: String) async -> Bool {
        await off { [server] in server.deleteAllocation(id: id) }
    }

    public func deleteAllocations(ofUser name: String) async -> Int {
        await off { [server] in server.deleteAllocations(ofUser: name) }
    }

    public func user(_ name: String) async -> UserInfo {
        await off { [server] in server.userInfo(name) }
    }

    public var isReady: Bool { server.isReady }
}
