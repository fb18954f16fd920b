import STUN

/// What the event loop does with a datagram a peer sent to a relay socket.
public enum PeerDataResult: Equatable, Sendable {
    /// Send the first `length` bytes of the output buffer to the allocation's client over `route`.
    case forward(route: ClientRoute, length: Int)
    case drop
}

/// Transaction ids for Data indications, one per relayed packet: a getrandom(2) call each would
/// cost more than the relaying. Indications are never matched to responses, so the id only has to
/// be unpredictable enough not to be guessed: SplitMix64 seeded from the system CSPRNG, reseeded
/// every 2^20 ids. (Requests' ids, which clients choose, are not affected.)
struct IndicationIDs {
    private var state: UInt64
    private var used: UInt32 = 0

    init() {
        var rng = SystemRandomNumberGenerator()
        state = rng.next()
    }

    @inline(__always)
    private mutating func next64() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func next() -> TransactionID {
        used &+= 1
        if used >= 1 << 20 {
            self = IndicationIDs()
        }
        return TransactionID(high: UInt32(truncatingIfNeeded: next64()), low: next64())
    }
}

extension RequestHandler {
    /// RFC 8656 section 10.2: a Send indication from the client. Never answered; what cannot be
    /// relayed is dropped and counted.
    func handleSendIndication(_ reader: MessageReader, context: PacketContext) -> HandlerResult {
        let tuple = FiveTuple(client: context.client, server: context.local, transport: context.transport)
        guard let allocation = allocations.allocation(for: tuple) else {
            turnCounters.droppedNoAllocation &+= 1
            return .noReply
        }
        guard let peer = try? reader.xorAddress(.xorPeerAddress),
              let data = reader.data else {
            stats.malformed &+= 1
            return .noReply
        }
        guard allocation.hasPermission(peer.ip, now: now), let relay = allocation.relay(for: peer.ip.family) else {
            turnCounters.droppedNoPermission &+= 1
            return .noReply
        }
        // A permission is per IP; the port is judged here (the server's own listener and admin
        // ports are never a peer; on its own relay addresses only the relay port range is).
        if let turn, !turn.policy.permits(peer, relays: turn.shared) {
            turnCounters.refusedByPolicy &+= 1
            return .noReply
        }
        send(data, from: relay, to: peer, allocation: allocation)
        return .noReply
    }

    /// RFC 8656 section 12.4: ChannelData from the client, relayed to the channel's peer.
    func handleChannelData(_ packet: UnsafeRawBufferPointer, context: PacketContext) -> HandlerResult {
        let parsed: (channel: UInt16, payload: UnsafeRawBufferPointer)
        do {
            parsed = try ChannelData.parse(packet, channels: (turn != nil ? TurnSettings.channelNumbers : ChannelData.validChannels))
        } catch {
            stats.malformed &+= 1
            return .malformed
        }
        let tuple = FiveTuple(client: context.client, server: context.local, transport: context.transport)
        guard let allocation = allocations.allocation(for: tuple) else {
            stats.unboundChannelData &+= 1
            turnCounters.droppedNoAllocation &+= 1
            return .noReply
        }
        guard let binding = allocation.channel(parsed.channel, now: now) else {
            stats.unboundChannelData &+= 1
            turnCounters.droppedNoChannel &+= 1
            return .noReply
        }
        guard allocation.hasPermission(binding.peer.ip, now: now),
              let relay = allocation.relay(for: binding.peer.ip.family) else {
            turnCounters.droppedNoPermission &+= 1
            return .noReply
        }
        send(parsed.payload, from: relay, to: binding.peer, allocation: allocation)
        return .noReply
    }

    /// `limits.bandwidthPer*`, either direction: false (and the drop counted) when the allocation or
    /// its user has spent this second's budget.
    @inline(__always)
    private func spendBandwidth(_ bytes: Int, of allocation: Allocation) -> Bool {
        if allocation.spendBandwidth(bytes, now: now) { return true }
        allocation.counters.droppedBandwidth &+= 1
        turnCounters.droppedBandwidth &+= 1
        return false
    }

    @inline(__always)
    private func send(_ payload: UnsafeRawBufferPointer, from relay: RelaySlot, to peer: TransportAddress,
                      allocation: Allocation) {
        guard spendBandwidth(payload.count, of: allocation) else { return }
        if relayIO?.sendToPeer(from: relay.handle, to: peer, payload) == true {
            allocation.counters.packetsToPeer &+= 1
            allocation.counters.bytesToPeer &+= UInt64(payload.count)
        } else {
            turnCounters.droppedSendFailed &+= 1
        }
    }

    /// RFC 8656 section 10.3 and 12.5: a datagram from a peer to a relay socket. With a permission for
    /// the peer's IP it goes to the client as ChannelData (when a channel is bound to that peer) or as
    /// a Data indication; without one it is dropped (section 9).
    public func handlePeerData(relay handle: RelayHandle, peer: TransportAddress, payload: UnsafeRawBufferPointer,
                               output: UnsafeMutableRawBufferPointer) -> PeerDataResult {
        guard let allocation = allocations.allocation(forRelay: handle) else { return .drop }
        guard allocation.hasPermission(peer.ip, now: now) else {
            allocation.counters.droppedNoPermission &+= 1
            turnCounters.droppedNoPermission &+= 1
            return .drop
        }
        guard spendBandwidth(payload.count, of: allocation) else { return .drop }
        var length = 0
        if let channel = allocation.channel(toPeer: peer, now: now) {
            // Streams need the 4-byte padding (section 12.5); UDP does not.
            guard let n = try? ChannelData.write(channel: channel, payload: payload, into: output,
                                                  padded: allocation.fiveTuple.transport.isStream,
                                                  channels: ChannelData.rfc5766Channels) else { return .drop }
            length = n
        } else {
            do {
                var w = try MessageWriter(buffer: output, type: MessageType(method: .data, class: .indication),
                                          transactionID: indicationIDs.next())
                try w.appendXORAddress(.xorPeerAddress, peer)
                try w.appendRaw(type: .data, value: payload)
                length = w.count
            } catch {
                return .drop
            }
        }
        allocation.counters.packetsToClient &+= 1
        allocation.counters.bytesToClient &+= UInt64(payload.count)
        return .forward(route: allocation.route, length: length)
    }
}
