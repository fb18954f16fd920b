import STUN

extension RequestHandler {
    /// RFC 8656 section 9.2: receiving a CreatePermission request. All or nothing: every
    /// XOR-PEER-ADDRESS is checked before any permission is installed or refreshed.
    func createPermission(_ reader: MessageReader, turn: TurnContext, auth: Authenticated, allocation: Allocation,
                          response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        var count = 0
        var failure: Int? = nil
        var newOnes = 0
        do {
            try reader.forEachXORAddress(.xorPeerAddress) { peer in
                count += 1
                guard failure == nil else { return }
                if allocation.relay(for: peer.ip.family) == nil {
                    failure = 443
                } else if !turn.policy.permits(peer.ip) {
                    failure = 403
                } else if !allocation.hasPermissionEntry(peer.ip) {
                    newOnes += 1
                }
            }
        } catch {
            return authenticatedResponse(reader, auth: auth, errorCode: 400, reason: "Bad XOR-PEER-ADDRESS", response: response)
        }
        guard count > 0 else {
            return authenticatedResponse(reader, auth: auth, errorCode: 400, reason: "Missing XOR-PEER-ADDRESS", response: response)
        }
        if let failure {
            if failure == 403 { turnCounters.refusedByPolicy &+= 1 }
            return authenticatedResponse(reader, auth: auth, errorCode: failure, response: response)
        }
        guard LimitsConfig.allows(allocation.permissions.count + newOnes - 1, under: turn.settings.limits.permissionsPerAllocation) else {
            return authenticatedResponse(reader, auth: auth, errorCode: 508, reason: "Too many permissions", response: response)
        }
        try? reader.forEachXORAddress(.xorPeerAddress) { peer in
            allocation.permit(peer.ip, now: now, lifetime: TurnSettings.permissionLifetime)
        }
        turnCounters.permissionsCreated &+= UInt64(newOnes)
        fastPath?.update(allocation, now: now)
        return authenticatedResponse(reader, auth: auth, response: response)
    }

    /// RFC 8656 section 11.2: receiving a ChannelBind request. Binding also installs or refreshes the
    /// permission for the peer's IP address.
    func channelBind(_ reader: MessageReader, turn: TurnContext, auth: Authenticated, allocation: Allocation,
                     response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        func fail(_ code: Int, _ reason: StaticString? = nil) -> HandlerResult {
            authenticatedResponse(reader, auth: auth, errorCode: code, reason: reason, response: response)
        }
        guard let channel = try? reader.channelNumber(), TurnSettings.channelNumbers.contains(channel) else {
            return fail(400, "Bad CHANNEL-NUMBER")
        }
        guard let peer = try? reader.xorAddress(.xorPeerAddress) else {
            return fail(400, "Missing XOR-PEER-ADDRESS")
        }
        guard allocation.relay(for: peer.ip.family) != nil else { return fail(443) }
        guard turn.policy.permits(peer, relays: turn.shared) else {
            turnCounters.refusedByPolicy &+= 1
            return fail(403)
        }
        // Section 11.2: the channel may not be bound to another peer, nor the peer to another channel;
        // the allocation binds the channel and installs the permission together, within the limits.
        switch allocation.bindChannel(channel, peer: peer, now: now, channelLifetime: TurnSettings.channelLifetime,
                                      permissionLifetime: TurnSettings.permissionLifetime,
                                      maxChannels: turn.settings.limits.channelsPerAllocation,
                                      maxPermissions: turn.settings.limits.permissionsPerAllocation) {
        case .bound(let new):
            if new { turnCounters.channelsBound &+= 1 }
        case .channelBoundToOtherPeer: return fail(400, "Channel bound to another peer")
        case .peerBoundToOtherChannel: return fail(400, "Peer bound to another channel")
        case .tooManyChannels: return fail(508, "Too many channels")
        case .tooManyPermissions: return fail(508, "Too many permissions")
        }
        fastPath?.update(allocation, now: now)
        return authenticatedResponse(reader, auth: auth, response: response)
    }
}
