import STUN

extension TernConfig {
    static let clusterKeys = ["alternateServers", "capacity", "nonceSecret"]
    static let proxyProtocolKeys = ["trusted"]

    /// `cluster`: `{"alternateServers": ["IP:port[#domain]", ...], "capacity": N, "nonceSecret": S}`.
    static func parseCluster(_ n: JSONNode) throws(ConfigError) -> ClusterConfig {
        let obj = try n.object(known: clusterKeys)
        var cluster = ClusterConfig()
        if let a = obj["alternateServers"] {
            let expected = "\"IP:port\" or \"IP:port#domain\" such as \"192.0.2.20:3478#turn2.example.com\" or \"[2001:db8::20]:3478\""
            var seen: Set<TransportAddress> = []
            cluster.alternateServers = try a.array("an array of \(expected) strings").map { item throws(ConfigError) in
                guard let text = item.value as? String, let alternate = AlternateServer(text) else { throw item.mismatch(expected) }
                guard seen.insert(alternate.address).inserted else { throw item.error("duplicate alternate server \(alternate.address)") }
                return alternate
            }
        }
        if let k = obj.nonNull("nonceSecret") { cluster.nonceSecret = try k.secret("a non-empty string, {\"file\": \"/path\"} or null") }
        if let c = obj.nonNull("capacity") { cluster.capacity = try c.integer(in: 0...10_000_000, "an integer 0...10000000 (0: never redirect) or null") }
        return cluster
    }

    /// `listeners[].proxyProtocol`: `{"trusted": ["CIDR", ...]}` or null, on `tcp` and `tls` only.
    static func parseProxyProtocol(_ n: JSONNode, transport: ClientTransport) throws(ConfigError) -> ProxyProtocolConfig {
        guard transport == .tcp || transport == .tls else {
            throw n.error("the PROXY protocol is for tcp and tls listeners, not \(transport)")
        }
        let obj = try n.object(known: proxyProtocolKeys)
        guard let t = obj["trusted"] else { throw n.error("needs trusted: the CIDRs the proxies connect from, such as [\"10.0.0.0/8\"]") }
        let trusted = try parseCIDRs(t)
        guard !trusted.isEmpty else { throw t.error("at least one CIDR is required (an empty list would refuse every connection)") }
        return ProxyProtocolConfig(trusted: trusted)
    }
}
