import STUN

/// Where the kernel fast path sends a rewritten datagram for one destination: into lo's ingress
/// when the address is this host's own, else out of the interface that holds the source address
/// the kernel's routing picks towards it (bpf_redirect_neigh then resolves the next hop). Looked up
/// once per destination and kept: up to `capacity` destinations, then the cache starts over.
final class RouteCache {
    struct Route: Equatable {
        var local: Bool
        var ifindex: UInt32
    }

    private var routes: [IPAddress: Route] = [:]
    private var localAddresses: Set<IPAddress>
    private let capacity: Int

    init(capacity: Int = 4096) {
        self.capacity = capacity
        localAddresses = Set(Posix.interfaceAddresses())
    }

    func route(to ip: IPAddress) -> Route? {
        if let r = routes[ip] { return r }
        let found: Route?
        if ip.isLoopback || localAddresses.contains(ip) {
            found = Route(local: true, ifindex: 1)
        } else if let source = Posix.sourceAddress(towards: ip) {
            if source.isLoopback {
                found = Route(local: true, ifindex: 1)
            } else {
                found = Posix.interfaceIndex(holding: source).map { Route(local: false, ifindex: $0) }
            }
        } else {
            found = nil
        }
        if routes.count >= capacity {
            routes.removeAll(keepingCapacity: true)
            localAddresses = Set(Posix.interfaceAddresses())
        }
        if let found { routes[ip] = found }
        return found
    }
}
