import STUN

extension RequestHandler {
    /// Allocate, Refresh, CreatePermission, ChannelBind, Connect and ConnectionBind: authenticate,
    /// then the method.
    func handleTurnRequest(_ reader: MessageReader, turn: TurnContext, context: PacketContext,
                           response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        let tuple = FiveTuple(client: context.client, server: context.local, transport: context.transport)
        if reader.type.method == .connectionBind {
            return connectionBind(reader, turn: turn, context: context, response: response)
        }
        let existing = allocations.allocation(for: tuple)
        // RFC 8656 section 7.2: a retransmitted Allocate gets the first response again, byte for byte
        // (its nonce may have expired meanwhile, so this comes before authentication).
        if reader.type.method == .allocate, let existing, existing.allocateTransaction == reader.transactionID,
           existing.allocateResponse.count <= response.count {
            existing.allocateResponse.withUnsafeBytes { response.copyMemory(from: $0) }
            return .reply(existing.allocateResponse.count)
        }
        let auth: Authenticated
        switch authenticate(reader, turn: turn, context: context, allocation: existing, response: response) {
        case .reply(let r): return throttleUnauthenticated(r, context: context)
        case .ok(let a): auth = a
        }
        switch reader.type.method {
        case .allocate:
            if existing != nil {
                return authenticatedResponse(reader, auth: auth, errorCode: 437, response: response)
            }
            return allocate(reader, turn: turn, auth: auth, tuple: tuple, context: context, response: response)
        case .refresh:
            guard let existing else { return authenticatedResponse(reader, auth: auth, errorCode: 437, response: response) }
            return refresh(reader, turn: turn, auth: auth, allocation: existing, response: response)
        case .createPermission:
            guard let existing else { return authenticatedResponse(reader, auth: auth, errorCode: 437, response: response) }
            return createPermission(reader, turn: turn, auth: auth, allocation: existing, response: response)
        case .connect:
            guard let existing else { return authenticatedResponse(reader, auth: auth, errorCode: 437, response: response) }
            return connect(reader, turn: turn, auth: auth, allocation: existing, response: response)
        case .channelBind:
            guard let existing else { return authenticatedResponse(reader, auth: auth, errorCode: 437, response: response) }
            return channelBind(reader, turn: turn, auth: auth, allocation: existing, response: response)
        default:
            // RFC 8489 section 6.3.1: a request the server cannot process is answered with an error.
            stats.unsupportedMethodErrors &+= 1
            return authenticatedResponse(reader, auth: auth, errorCode: 400, reason: "Unsupported method", response: response)
        }
    }

    /// RFC 8656 section 7.2 "desired lifetime": the requested value capped at the maximum, but never
    /// below the default; LIFETIME 0 is only meaningful in a Refresh (deletion).
    func desiredLifetime(_ reader: MessageReader, settings: TurnSettings) -> UInt32? {
        guard let requested = try? reader.lifetime() else { return settings.defaultLifetime }
        if requested == 0 { return 0 }
        return max(settings.defaultLifetime, min(requested, settings.maxLifetime))
    }

    static let draftAdditionalAddressFamily = AttributeType(rawValue: 0x8032)

    /// RFC 8656 section 7.2: receiving an Allocate request.
    private func allocate(_ reader: MessageReader, turn: TurnContext, auth: Authenticated, tuple: FiveTuple,
                          context: PacketContext, response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        func fail(_ code: Int, _ reason: StaticString? = nil) -> HandlerResult {
            authenticatedResponse(reader, auth: auth, errorCode: code, reason: reason, response: response)
        }
        // RFC 8656 section 3.1: the client reaches the server over UDP, TCP, TLS or DTLS; the relay is
        // UDP whatever the client transport (section 2.1), or TCP with RFC 6062. The event loop sets
        // `relayIO` before any packet arrives; without it there is nothing to allocate with.
        guard let relayIO else {
            return fail(400, "No relay available")
        }
        // Section 7.2: REQUESTED-TRANSPORT is mandatory; UDP (17), or TCP (6, RFC 6062); 442 otherwise.
        // The attributes are read with the codec's getters: a malformed value is a 400.
        let transport: UInt8
        let evenPort: Bool?, reservation: UInt64?, requestedFamilyByte: UInt8?, additionalFamilyByte: UInt8?
        do {
            guard let t = try reader.requestedTransport() else { return fail(400, "Missing REQUESTED-TRANSPORT") }
            transport = t
            evenPort = try reader.evenPort()
            reservation = try reader.reservationToken()
            requestedFamilyByte = try reader.requestedAddressFamilyByte()
            // coturn's clients still send ADDITIONAL-ADDRESS-FAMILY under its draft code point 0x8032
            // (RFC 8656 assigned 0x8000); both are comprehension-optional, so honouring the old one is safe.
            additionalFamilyByte = try reader.additionalAddressFamilyByte()
                ?? reader.addressFamilyByte(Self.draftAdditionalAddressFamily)
        } catch {
            return fail(400, "Malformed attribute")
        }
        // RFC 6062 section 5.1: TCP relaying (6) is for clients on a stream connection only.
        let tcpRelay = transport == 6
        guard transport == 17 || tcpRelay else { return fail(442) }
        if tcpRelay {
            guard context.transport.isStream else { return fail(400, "TCP relaying needs a TCP or TLS client connection") }
            if reader.contains(.dontFragment) || evenPort != nil || reservation != nil {
                return fail(400, "DONT-FRAGMENT, EVEN-PORT or RESERVATION-TOKEN with TCP relaying")
            }
        }
        let dontFragment = reader.contains(.dontFragment)
        // EVEN-PORT's R bit (section 14.6): hold the next port too.
        let reserveNext = evenPort ?? false

        // Combinations the RFC forbids (section 7.2): a token with EVEN-PORT or an address family;
        // REQUESTED- with ADDITIONAL-ADDRESS-FAMILY; EVEN-PORT's R bit with a dual allocation.
        if reservation != nil && (evenPort != nil || requestedFamilyByte != nil || additionalFamilyByte != nil) {
            return fail(400, "RESERVATION-TOKEN with EVEN-PORT or an address family")
        }
        if requestedFamilyByte != nil && additionalFamilyByte != nil {
            return fail(400, "REQUESTED- and ADDITIONAL-ADDRESS-FAMILY together")
        }
        if tcpRelay && additionalFamilyByte != nil {
            return fail(400, "Dual allocations are UDP only")
        }
        if reserveNext && additionalFamilyByte != nil {
            return fail(400, "EVEN-PORT R with ADDITIONAL-ADDRESS-FAMILY")
        }
        var family = AddressFamily.ipv4
        if let b = requestedFamilyByte {
            guard let f = AddressFamily(rawValue: b) else { return fail(440) }
            family = f
        }
        var additional: AddressFamily? = nil
        if let b = additionalFamilyByte {
            // Section 14.2 of RFC 8656: only IPv6 may be asked for in addition.
            guard b == AddressFamily.ipv6.rawValue else { return fail(440) }
            additional = .ipv6
        }

        // Draining (SIGTERM): no new allocations. RFC 8656 section 7.2 lets the server redirect with
        // 300 Try Alternate and ALTERNATE-SERVER (RFC 8489 section 10): `drain.alternateServer`, else
        // the cluster's alternates; without one, 508. Either only in the client's family (section 14.15).
        if let drain = draining {
            let own = drain.alternateServer.flatMap { $0.ip.family == context.client.ip.family ? AlternateServer(address: $0) : nil }
            let alternate = own ?? nextAlternate(turn, context)
            if let alternate {
                turnCounters.redirectedDrain &+= 1
                return tryAlternate(alternate, reader, context: context, auth: auth, response: response)
            }
            return fail(508, "Server is draining")
        }
        // At `cluster.capacity`: the next alternate of the client's family takes the allocation.
        // Below `limits.allocationsTotal` with no alternate of that family, this node still serves it.
        if turn.settings.capacity > 0, turn.shared.allocationCount >= turn.settings.capacity,
           let alternate = nextAlternate(turn, context) {
            turnCounters.redirectedCapacity &+= 1
            return tryAlternate(alternate, reader, context: context, auth: auth, response: response)
        }
        // A relay address behind a NAT that is not known yet, or not 1:1 (`relay.discoverExternal`):
        // nothing is advertised in its name, so no relay of that family is handed out (440, as for a
        // family the server does not offer, RFC 8656 section 7.2); a dual request keeps the other.
        if turn.settings.withheldFamilies.contains(family) {
            return fail(440, "Relay address of this family not discovered yet")
        }
        if let a = additional, turn.settings.withheldFamilies.contains(a) { additional = nil }
        let additionalWithheld = additionalFamilyByte != nil && additional == nil
        // Rate and quotas (486, or 508 for the server's total) before any socket is opened. A port
        // held for EVEN-PORT's R bit counts as one more allocation, for every quota, while it lives;
        // redeeming a RESERVATION-TOKEN passes the reservation's count to the new allocation.
        let userKey = Self.userKey(auth.username)
        let clientIP = context.client.ip
        func refused(_ refusal: AllocationRefusal) -> HandlerResult {
            switch refusal {
            case .rate: turnCounters.refusedRate &+= 1
            case .userQuota: turnCounters.refusedUserQuota &+= 1
            case .ipQuota: turnCounters.refusedIPQuota &+= 1
            case .total: turnCounters.refusedTotal &+= 1
            }
            return fail(refusal.code)
        }
        var redeemed: OpenedRelay.Reserved? = nil
        if let token = reservation {
            switch turn.shared.redeemReservation(token, user: userKey, ip: clientIP, limits: turn.settings.limits, now: now) {
            case .redeemed(let r): redeemed = r
            case .notFound: return fail(508, "Reservation not found")
            case .refused(let refusal): return refused(refusal)
            }
        } else if let refusal = turn.shared.reserveAllocation(user: userKey, ip: clientIP, limits: turn.settings.limits,
                                                              now: now, count: reserveNext ? 2 : 1) {
            return refused(refusal)
        }
        var relays: [RelaySlot] = []
        var reservationToken: UInt64? = nil
        var additionalError: Int? = additionalWithheld ? 440 : nil
        let advertised = turn.settings.advertised
        if let reserved = redeemed {
            let opened = relayIO.adoptReserved(reserved, dontFragment: dontFragment)
            relays.append(RelaySlot(handle: opened.handle, bound: opened.bound, advertised: advertised(opened.bound)))
        } else if tcpRelay {
            switch relayIO.openTCPRelay(family: family, near: context.local.ip) {
            case .success(let opened):
                relays.append(RelaySlot(handle: opened.handle, bound: opened.bound, advertised: advertised(opened.bound)))
            case .failure(let e):
                turn.shared.releaseAllocation(user: userKey, ip: clientIP)
                return fail(e == .familyUnavailable ? 440 : 508)
            }
        } else {
            switch relayIO.openRelay(family: family, near: context.local.ip, evenPort: evenPort != nil, reserveNext: reserveNext, dontFragment: dontFragment) {
            case .success(let opened):
                relays.append(RelaySlot(handle: opened.handle, bound: opened.bound, advertised: advertised(opened.bound)))
                if let next = opened.reservedNext {
                    reservationToken = turn.shared.addReservation(next, expiry: now + UInt64(TurnSettings.reservationLifetime),
                                                                  user: userKey, ip: clientIP)
                } else if reserveNext {
                    turn.shared.releaseAllocation(user: userKey, ip: clientIP)
                }
            case .failure(let e):
                turn.shared.releaseAllocation(user: userKey, ip: clientIP, count: reserveNext ? 2 : 1)
                return fail(e == .familyUnavailable ? 440 : 508)
            }
            if let additional {
                switch relayIO.openRelay(family: additional, near: context.local.ip, evenPort: false, reserveNext: false, dontFragment: dontFragment) {
                case .success(let opened):
                    relays.append(RelaySlot(handle: opened.handle, bound: opened.bound, advertised: advertised(opened.bound)))
                case .failure(let e):
                    additionalError = e == .familyUnavailable ? 440 : 508
                }
            }
        }
        let lifetime = desiredLifetime(reader, settings: turn.settings).map { $0 == 0 ? turn.settings.defaultLifetime : $0 }
            ?? turn.settings.defaultLifetime
        let result = authenticatedResponse(reader, auth: auth, response: response) { w throws(STUNEncodeError) in
            for r in relays { try w.appendXORAddress(.xorRelayedAddress, r.advertised) }
            try w.appendUInt32(type: .lifetime, lifetime)
            if let reservationToken { try w.appendUInt64(type: .reservationToken, reservationToken) }
            try w.appendXORAddress(.xorMappedAddress, context.client)
            if let additionalError {
                try w.append(.addressErrorCode(family: .ipv6, code: additionalError,
                                               reason: "\(ErrorCode.defaultReason(additionalError))"))
            }
        }
        guard case .reply(let n) = result else {
            // Could not even encode the answer: undo everything.
            for r in relays { relayIO.closeRelay(r.handle) }
            turn.shared.releaseAllocation(user: userKey, ip: clientIP)
            return result
        }
        let allocation = Allocation(
            id: turn.shared.makeID(), fiveTuple: tuple,
            route: ClientRoute(socket: context.socket, connection: context.connection,
                               client: context.client, local: context.local),
            username: auth.username, key: auth.key, algorithm: auth.algorithm, relays: relays,
            expiry: now + UInt64(lifetime), dontFragment: dontFragment, tcpRelay: tcpRelay,
            transaction: reader.transactionID, response: Array(UnsafeRawBufferPointer(rebasing: response[0..<n])),
            bandwidthRate: turn.settings.limits.bandwidthPerAllocation,
            userBandwidth: turn.shared.bandwidth(for: userKey, rate: turn.settings.limits.bandwidthPerUser), now: now)
        allocations.insert(allocation)
        turn.shared.addLiveRelays(relays)
        turnCounters.allocationsCreated &+= 1
        return result
    }

    /// RFC 8656 section 7.3: receiving a Refresh request.
    private func refresh(_ reader: MessageReader, turn: TurnContext, auth: Authenticated, allocation: Allocation,
                         response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        let familyByte: UInt8?
        do {
            familyByte = try reader.requestedAddressFamilyByte()
        } catch {
            return authenticatedResponse(reader, auth: auth, errorCode: 400, reason: "Malformed REQUESTED-ADDRESS-FAMILY", response: response)
        }
        if let b = familyByte {
            guard let f = AddressFamily(rawValue: b), allocation.relay(for: f) != nil else {
                return authenticatedResponse(reader, auth: auth, errorCode: 443, response: response)
            }
        }
        let lifetime = desiredLifetime(reader, settings: turn.settings) ?? turn.settings.defaultLifetime
        if lifetime == 0 {
            deallocate(allocation, reason: .refreshed)
        } else {
            allocation.refresh(lifetime: lifetime, now: now)
            fastPath?.update(allocation, now: now)
        }
        return authenticatedResponse(reader, auth: auth, response: response) { w throws(STUNEncodeError) in
            try w.appendUInt32(type: .lifetime, lifetime)
        }
    }

    /// Ends an allocation: relay sockets closed, quota given back, counters kept in the totals.
    func deallocate(_ allocation: Allocation, reason: AllocationEndReason) {
        allocations.remove(allocation)
        // The kernel's entries go before the sockets they stand for.
        if let fastPath {
            let carried = fastPath.remove(allocation)
            allocation.counters.add(carried)
            turnCounters.droppedBandwidth &+= carried.droppedBandwidth
        }
        for r in allocation.relays { relayIO?.closeRelay(r.handle) }
        turn?.shared.removeLiveRelays(allocation.relays)
        for id in allocation.tcpPeers.keys { turn?.shared.removePeerConnection(id) }
        turn?.shared.releaseAllocation(user: Self.userKey(allocation.username), ip: allocation.fiveTuple.client.ip)
        let c = allocation.counters
        turnCounters.endedTotals.add(c)
        endedByUser[Self.userKey(allocation.username), default: AllocationCounters()].add(c)
        if reason == .expired { turnCounters.allocationsExpired &+= 1 } else { turnCounters.allocationsDeleted &+= 1 }
        turnCounters.ended[reason.rawValue] &+= 1
    }

    /// The identity counters are kept under: a TURN REST API username `<expiry>:<user>` changes with
    /// every credential, so its `<user>` part is the key (otherwise the table would grow with every
    /// credential issued); a static user is its own key.
    public static func userKey(_ username: String) -> String {
        if let colon = username.firstIndex(of: ":"), colon > username.startIndex,
           username[..<colon].allSatisfy({ $0.isASCII && $0.isNumber }) {
            return String(username[username.index(after: colon)...])
        }
        return username
    }

    /// One user's traffic on this worker: live allocations plus ended ones (`user` as `userKey`).
    public func counters(forUser user: String) -> (allocations: Int, traffic: AllocationCounters) {
        var total = endedByUser[user] ?? AllocationCounters()
        var live = 0
        for a in allocations.all where Self.userKey(a.username) == user {
            live += 1
            total.add(a.counters)
        }
        return (live, total)
    }

    /// Deletes an allocation by id (the admin endpoint's DELETE). True if it existed on this worker.
    @discardableResult
    public func deleteAllocation(id: UInt64) -> Bool {
        guard let a = allocations.allocation(id: id) else { return false }
        deallocate(a, reason: .admin)
        return true
    }

    /// Ends every live allocation of `user` on this worker (the admin endpoint's DELETE
    /// /users/{name}/allocations): `user` is a static username, or a TURN REST username's `<id>`
    /// (every credential issued for it), or one whole REST username. Returns how many ended.
    public func deleteAllocations(ofUser user: String) -> Int {
        let ending = allocations.all.filter { Self.userKey($0.username) == user || $0.username == user }
        for a in ending { deallocate(a, reason: .admin) }
        return ending.count
    }

    /// Reads the clock and expires what is due: allocations (RFC 8656 section 7), permissions
    /// (section 9) and channel bindings (section 11), plus unredeemed port reservations. Called
    /// once a second by the worker (and by tests after moving their clock); costs nothing per packet.
    public func tick() {
        readClock()
        configuration.throttle.sweep(now: now)
        guard let turn else { return }
        collectFastPath()
        var ended: [Allocation] = []
        for a in allocations.all {
            if a.expiry <= now {
                ended.append(a)
                continue
            }
            a.expire(now: now)
            fastPath?.update(a, now: now)
        }
        for a in ended { deallocate(a, reason: .expired) }
        for r in turn.shared.expiredReservations(now: now) { relayIO?.discardReserved(r) }
        turn.shared.allocationRate.sweep(now: now)
    }

    /// Adds what the fast path relayed since the last tick to its allocations' counters (and so to
    /// `/stats`, Prometheus and the admin API, whichever path carried a packet).
    public func collectFastPath() {
        fastPath?.collect { id, counters in
            allocations.allocation(id: id)?.counters.add(counters)
            if counters.droppedBandwidth > 0 { turnCounters.droppedBandwidth &+= counters.droppedBandwidth }
        }
    }

    /// RFC 8656 section 3.1 / RFC 6062 section 5.1: an allocation made over a stream connection lives
    /// only as long as that connection. Called by the event loop when it closes.
    public func streamClosed(client: TransportAddress, local: TransportAddress, transport: ClientTransport) {
        let tuple = FiveTuple(client: client, server: local, transport: transport)
        if let a = allocations.allocation(for: tuple) { deallocate(a, reason: .connectionClosed) }
    }

    /// After many allocations ended: the tables' spare capacity goes back (see `Worker.tick`).
    public func releaseSpareCapacity() {
        allocations.releaseSpareCapacity()
        endedByUser.releaseSpareCapacity()
    }

    /// Ends every allocation (shutdown).
    public func deallocateAll() {
        for a in Array(allocations.all) { deallocate(a, reason: .shutdown) }
    }
}
