import STUN

/// RFC 6062: TURN extensions for TCP allocations. The control connection carries Allocate (with
/// REQUESTED-TRANSPORT TCP), Connect and ConnectionAttempt; each peer connection is joined to a
/// separate client data connection by ConnectionBind, after which both carry raw bytes.
extension RequestHandler {
    /// RFC 6062 section 5.2: receiving a Connect request. The response waits for the connection's
    /// outcome (`peerConnectFinished`).
    func connect(_ reader: MessageReader, turn: TurnContext, auth: Authenticated, allocation: Allocation,
                 response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        func fail(_ code: Int, _ reason: StaticString? = nil) -> HandlerResult {
            authenticatedResponse(reader, auth: auth, errorCode: code, reason: reason, response: response)
        }
        guard allocation.tcpRelay, let relay = allocation.relays.first else { return fail(400, "Not a TCP allocation") }
        guard let peer = try? reader.xorAddress(.xorPeerAddress) else { return fail(400, "Missing XOR-PEER-ADDRESS") }
        guard peer.ip.family == relay.bound.ip.family else { return fail(443) }
        guard turn.policy.permits(peer, relays: turn.shared, stream: true) else {
            turnCounters.refusedByPolicy &+= 1
            return fail(403)
        }
        // Section 5.2: one connection per peer address, pending or active.
        if allocation.tcpPeers.values.contains(where: { $0.peer == peer }) { return fail(446) }
        guard LimitsConfig.allows(allocation.tcpPeers.count, under: turn.settings.limits.channelsPerAllocation) else { return fail(508, "Too many connections") }
        let id = turn.shared.registerPeerConnection(worker: workerIndex, username: allocation.username)
        allocation.tcpPeers[id] = Allocation.TCPPeer(
            peer: peer, pendingConnect: (reader.transactionID, auth.sha256, reader.hasFingerprint))
        // Connecting to a peer implies permission for it (the peer may answer at once).
        allocation.permit(peer.ip, now: now, lifetime: TurnSettings.permissionLifetime)
        relayIO?.connectPeer(from: relay.handle, to: peer, connectionID: id)
        return .noReply
    }

    /// The outcome of a Connect: writes the success response with CONNECTION-ID or the 447 error
    /// into `response` and returns where it goes. nil when the allocation is gone.
    public func peerConnectFinished(connectionID id: UInt32, relay: RelayHandle, success: Bool,
                                    response: UnsafeMutableRawBufferPointer) -> (route: ClientRoute, length: Int)? {
        guard let turn, let allocation = allocations.allocation(forRelay: relay),
              let entry = allocation.tcpPeers[id], let pending = entry.pendingConnect else { return nil }
        allocation.tcpPeers[id]?.pendingConnect = nil
        if !success {
            allocation.tcpPeers[id] = nil
            turn.shared.removePeerConnection(id)
            turnCounters.errors[447, default: 0] &+= 1
        }
        do {
            var w = try MessageWriter(buffer: response,
                                      type: MessageType(method: .connect, class: success ? .successResponse : .errorResponse),
                                      transactionID: pending.transaction)
            if success {
                try w.appendUInt32(type: .connectionID, id)
            } else {
                try w.appendErrorCode(447)
            }
            if let software = configuration.software { try w.appendSoftware(software) }
            if pending.sha256 {
                try w.appendMessageIntegritySHA256(key: allocation.key)
            } else {
                try w.appendMessageIntegrity(key: allocation.key)
            }
            if pending.fingerprint { try w.appendFingerprint() }
            return (allocation.route, w.count)
        } catch {
            stats.encodeFailures &+= 1
            return nil
        }
    }

    /// RFC 6062 section 5.3: a peer connected to a TCP relayed address. Accepted only with a
    /// permission for its IP; then the client hears of it in a ConnectionAttempt indication.
    public func incomingPeerConnection(relay: RelayHandle, peer: TransportAddress,
                                       output: UnsafeMutableRawBufferPointer) -> (connectionID: UInt32, route: ClientRoute, length: Int)? {
        guard let turn, let allocation = allocations.allocation(forRelay: relay), allocation.tcpRelay,
              allocation.hasPermission(peer.ip, now: now),
              LimitsConfig.allows(allocation.tcpPeers.count, under: turn.settings.limits.channelsPerAllocation) else {
            turnCounters.droppedNoPermission &+= 1
            return nil
        }
        let id = turn.shared.registerPeerConnection(worker: workerIndex, username: allocation.username)
        do {
            var w = try MessageWriter(buffer: output, type: MessageType(method: .connectionAttempt, class: .indication),
                                      transactionID: indicationIDs.next())
            try w.appendXORAddress(.xorPeerAddress, peer)
            try w.appendUInt32(type: .connectionID, id)
            allocation.tcpPeers[id] = Allocation.TCPPeer(peer: peer, pendingConnect: nil)
            return (id, allocation.route, w.count)
        } catch {
            turn.shared.removePeerConnection(id)
            return nil
        }
    }

    /// A peer connection ended (closed by either side, failed, or never bound within 30 s).
    public func peerConnectionClosed(connectionID id: UInt32, relay: RelayHandle) {
        turn?.shared.removePeerConnection(id)
        allocations.allocation(forRelay: relay)?.tcpPeers[id] = nil
    }

    /// RFC 6062 section 5.4: receiving a ConnectionBind request on a new client connection.
    func connectionBind(_ reader: MessageReader, turn: TurnContext, context: PacketContext,
                        response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        let auth: Authenticated
        switch authenticate(reader, turn: turn, context: context, allocation: nil, response: response) {
        case .reply(let r): return throttleUnauthenticated(r, context: context)
        case .ok(let a): auth = a
        }
        guard context.transport.isStream else {
            return authenticatedResponse(reader, auth: auth, errorCode: 400, reason: "ConnectionBind needs a TCP connection", response: response)
        }
        // Section 5.4: ConnectionBind comes on a new connection. On one that carries an allocation
        // (the control connection) or has carried other requests it would turn that connection into
        // a raw pipe whose allocation never ends with it: refused.
        let tuple = FiveTuple(client: context.client, server: context.local, transport: context.transport)
        if context.streamInUse || allocations.allocation(for: tuple) != nil {
            return authenticatedResponse(reader, auth: auth, errorCode: 400, reason: "ConnectionBind needs a new connection", response: response)
        }
        guard let id = try? reader.connectionID() else {
            return authenticatedResponse(reader, auth: auth, errorCode: 400, reason: "Missing CONNECTION-ID", response: response)
        }
        let claim = turn.shared.claimPeerConnection(id, username: auth.username)
        guard let entry = claim.entry else {
            return authenticatedResponse(reader, auth: auth, errorCode: 400, reason: "Unknown CONNECTION-ID", response: response)
        }
        guard claim.ok else { return authenticatedResponse(reader, auth: auth, errorCode: 441, response: response) }
        let result = authenticatedResponse(reader, auth: auth, response: response)
        guard case .reply(let n) = result else { return result }
        return .bindDataConnection(reply: n, connection: id, owner: entry.worker)
    }
}
