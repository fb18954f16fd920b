import STUN

/// The handler's part of a `ServerSnapshot`, and the allocation views of the admin endpoint. Called
/// on the handler's worker queue only; everything here is off the data path.
extension RequestHandler {
    /// Adds this worker's request, allocation, auth and relay figures to `s`. `perUser` also fills `s.users`.
    public func addFigures(to s: inout ServerSnapshot, perUser: Bool) {
        // Requests by method and result.
        for (m, method) in RequestCounters.methodLabels.enumerated() {
            for (r, result) in RequestCounters.resultLabels.enumerated() {
                let n = requests.count(methodIndex: m, resultIndex: r)
                guard n > 0 else { continue }
                s.requests[method, default: [:]][result, default: 0] &+= n
                // A 401 is the normal first round of authentication (failures are in authFailures).
                if method == "allocate" && result != "success" && result != "401" {
                    s.allocations.refused[result, default: 0] &+= n
                }
            }
        }
        let t = turnCounters
        s.allocations.created &+= t.allocationsCreated
        for reason in AllocationEndReason.allCases {
            let n = t.ended[reason.rawValue]
            if n > 0 { s.allocations.ended[reason.label, default: 0] &+= n }
        }
        let a = t.auth
        for (label, n) in [("challenged", a.challenged), ("missing_attributes", a.missingAttributes),
                           ("stale_nonce", a.staleNonce), ("unknown_user", a.unknownUser),
                           ("expired_credentials", a.expiredCredentials), ("bad_integrity", a.badIntegrity),
                           ("wrong_credentials", a.wrongCredentials), ("bad_password_algorithm", a.badPasswordAlgorithm),
                           ("revoked", a.revoked)] {
            s.authFailures[label, default: 0] &+= n
        }
        var relayed = t.endedTotals
        var active: [String: Int] = [:]
        for alloc in allocations.all {
            relayed.add(alloc.counters)
            for r in alloc.relays {
                let key = "\(alloc.fiveTuple.transport)/\(r.bound.ip.family == .ipv6 ? "ipv6" : "ipv4")"
                active[key, default: 0] += 1
            }
            if perUser {
                let key = Self.userKey(alloc.username)
                var u = s.users?[key] ?? UserFigures()
                u.allocations += 1
                s.users?[key] = u
            }
        }
        s.allocations.active += allocations.count
        s.allocations.redirected["capacity", default: 0] &+= t.redirectedCapacity
        s.allocations.redirected["drain", default: 0] &+= t.redirectedDrain
        for (key, n) in active {
            let parts = key.split(separator: "/").map(String.init)
            if let i = s.allocations.activeBy.firstIndex(where: { $0.transport == parts[0] && $0.family == parts[1] }) {
                s.allocations.activeBy[i].count += n
            } else {
                s.allocations.activeBy.append(ActiveAllocations(transport: parts[0], family: parts[1], count: n))
            }
        }
        s.relayed.add(relayed)
        let dropped: [(String, UInt64)] = [
            ("malformed", stats.malformed), ("bad_fingerprint", stats.badFingerprint),
            ("no_allocation", t.droppedNoAllocation), ("no_channel", t.droppedNoChannel &+ stats.unboundChannelData),
            ("no_permission", t.droppedNoPermission &+ relayed.droppedNoPermission),
            ("policy", t.refusedByPolicy), ("send_failed", t.droppedSendFailed),
            ("bandwidth", t.droppedBandwidth), ("unauthenticated_rate", t.droppedUnauthenticatedRate),
            ("binding_rate", stats.droppedBindingRate),
        ]
        for (label, n) in dropped { s.dropped[label, default: 0] &+= n }
        let limited: [(String, UInt64)] = [
            ("allocation_rate", t.refusedRate), ("user_quota", t.refusedUserQuota), ("ip_quota", t.refusedIPQuota),
            ("total_allocations", t.refusedTotal), ("bandwidth", t.droppedBandwidth),
            ("unauthenticated_rate", t.droppedUnauthenticatedRate), ("binding_rate", stats.droppedBindingRate),
        ]
        for (label, n) in limited { s.limited[label, default: 0] &+= n }
        if perUser {
            var traffic = endedByUser
            for alloc in allocations.all { traffic[Self.userKey(alloc.username), default: AllocationCounters()].add(alloc.counters) }
            for (user, c) in traffic {
                var u = s.users?[user] ?? UserFigures()
                u.relayed.add(c)
                s.users?[user] = u
            }
        }
    }

    /// Live allocations of this worker, filtered by user id and client address (IP, or IP:port).
    public func allocationInfos(user: String? = nil, client: String? = nil) -> [AllocationInfo] {
        allocations.all.compactMap { a in
            if let user, Self.userKey(a.username) != user && a.username != user { return nil }
            if let client, "\(a.fiveTuple.client.ip)" != client && "\(a.fiveTuple.client)" != client { return nil }
            return info(a)
        }
    }

    public func allocationInfo(id: UInt64) -> AllocationInfo? {
        allocations.allocation(id: id).map(info)
    }

    func info(_ a: Allocation) -> AllocationInfo {
        AllocationInfo(
            id: String(a.id),
            user: a.username,
            client: "\(a.fiveTuple.client)",
            server: "\(a.fiveTuple.server)",
            transport: "\(a.fiveTuple.transport)",
            relayed: a.relays.map { "\($0.advertised)" },
            relayTransport: a.tcpRelay ? "tcp" : "udp",
            lifetimeSeconds: a.expiry > now ? a.expiry - now : 0,
            ageSeconds: now > a.createdAt ? now - a.createdAt : 0,
            permissions: a.permissions.filter { $0.value > now }.keys.map { "\($0)" }.sorted(),
            channels: a.channels.sorted { $0.key < $1.key }.map { .init(number: Int($0.key), peer: "\($0.value.peer)") },
            relayedTraffic: RelayedTraffic(a.counters),
            worker: workerIndex)
    }
}

extension RelayedTraffic {
    mutating func add(_ c: AllocationCounters) {
        clientToPeer.packets &+= c.packetsToPeer
        clientToPeer.bytes &+= c.bytesToPeer
        peerToClient.packets &+= c.packetsToClient
        peerToClient.bytes &+= c.bytesToClient
    }
}
