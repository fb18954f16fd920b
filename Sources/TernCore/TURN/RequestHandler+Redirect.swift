import STUN

extension RequestHandler {
    /// The next `cluster.alternateServers` entry of the client's address family, in turn across all
    /// workers; nil when there is none. RFC 8489 section 14.15: ALTERNATE-SERVER has the family of
    /// the request's source (the client's own address, also behind the PROXY protocol). This node's
    /// own entry is skipped (one list for the whole fleet names every node): the address the client
    /// reached, or the advertised external address with that port.
    func nextAlternate(_ turn: TurnContext, _ context: PacketContext) -> AlternateServer? {
        let family = context.client.ip.family
        let external = family == .ipv4 ? turn.settings.relay.externalIPv4 : turn.settings.relay.externalIPv6
        let reached = context.local
        let candidates = turn.settings.cluster.alternates(family).filter { a in
            a.address != reached && !(a.address.ip == external && a.address.port == reached.port)
        }
        guard !candidates.isEmpty else { return nil }
        return candidates[turn.shared.nextAlternate(family, count: candidates.count)]
    }

    /// 300 Try Alternate (RFC 8489 section 10, RFC 8656 section 7.2) to an authenticated Allocate:
    /// ALTERNATE-SERVER, and over TLS or DTLS the alternate's name as ALTERNATE-DOMAIN (section
    /// 14.16) when configured, so the client can verify the alternate's certificate. The response
    /// carries MESSAGE-INTEGRITY like every authenticated one: the client can trust the redirect.
    func tryAlternate(_ alternate: AlternateServer, _ reader: MessageReader, context: PacketContext,
                      auth: Authenticated, response: UnsafeMutableRawBufferPointer) -> HandlerResult {
        let secure = context.transport == .tls || context.transport == .dtls
        return authenticatedResponse(reader, auth: auth, errorCode: 300, response: response) { w throws(STUNEncodeError) in
            try w.appendAddress(.alternateServer, alternate.address)
            if secure, let domain = alternate.domain { try w.appendString(.alternateDomain, domain) }
        }
    }
}
