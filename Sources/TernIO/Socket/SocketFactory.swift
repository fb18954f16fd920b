#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CTernShims
import STUN
import TernCore

/// The one place that creates sockets, each kind with its options: client-facing UDP/DTLS and
/// TCP/TLS listeners (one SO_REUSEPORT socket per worker), accepted connections, UDP relay sockets,
/// and RFC 6062's TCP relayed address and peer connections. Every socket is non-blocking and
/// close-on-exec, and IPv6 sockets are IPV6_V6ONLY (a dual-stack socket would report IPv4 clients
/// as IPv4-mapped IPv6 addresses).
struct SocketFactory {
    var io: IOConfig

    /// What a listener of `transport` is built on.
    static func isDatagram(_ transport: ClientTransport) -> Bool {
        transport == .udp || transport == .dtls
    }

    private static func open(_ address: TransportAddress, datagram: Bool) throws(SystemError) -> Socket {
        let v6 = address.ip.family == .ipv6
        let type = datagram ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
        let socket = Socket(owning: try Posix.socket(domain: v6 ? AF_INET6 : AF_INET, type: type))
        if v6 { try Posix.setOption(socket.fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
        return socket
    }

    // MARK: client-facing listeners

    /// One worker's socket of a client-facing listener: SO_REUSEPORT so that every worker binds the
    /// same address (the kernel's 4-tuple hash spreads clients over them); a wildcard UDP socket
    /// learns each datagram's local address (IP_PKTINFO) to answer from it; TCP and TLS listen.
    func listener(_ transport: ClientTransport, address: TransportAddress) throws(SystemError) -> Socket {
        let datagram = Self.isDatagram(transport)
        let socket = try Self.open(address, datagram: datagram)
        try Posix.setOption(socket.fd, SOL_SOCKET, tern_so_reuseport(), 1)
        if datagram {
            Posix.setBufferSizes(socket.fd, receive: io.receiveBuffer, send: io.sendBuffer)
            if transport == .udp && address.ip.isUnspecified {
                // A wildcard UDP socket must answer from the address the request was sent to.
                try Posix.enablePacketInfo(socket.fd, ipv6: address.ip.family == .ipv6)
            }
        } else {
            try Posix.setOption(socket.fd, SOL_SOCKET, SO_REUSEADDR, 1)
        }
        try Posix.bind(socket.fd, TernSocketAddress(address))
        if !datagram { try Posix.listen(socket.fd, backlog: 1024) }
        return socket
    }

    /// SO_REUSEPORT would let this process share a port with another Tern (or coturn) of the same
    /// user and silently split its traffic. A plain bind of a throwaway socket, before the real ones,
    /// tells "in use" apart (EADDRINUSE).
    func probeFree(_ transport: ClientTransport, address: TransportAddress) throws(SystemError) {
        let datagram = Self.isDatagram(transport)
        let socket = try Self.open(address, datagram: datagram)
        defer { socket.close() }
        if !datagram { try Posix.setOption(socket.fd, SOL_SOCKET, SO_REUSEADDR, 1) }
        try Posix.bind(socket.fd, TernSocketAddress(address))
    }

    /// A socket passed in by systemd socket activation, when it is of `transport`'s socket type and
    /// bound to exactly `address`: then made non-blocking (systemd passes blocking sockets), with
    /// IP_PKTINFO on a wildcard UDP one, and true. False when it does not match.
    func adoptInherited(_ socket: Socket, transport: ClientTransport, address: TransportAddress) -> Bool {
        let wantType = Self.isDatagram(transport) ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
        guard let type = try? Posix.socketType(socket.fd), type == wantType,
              let local = try? socket.localAddress(), local == address else { return false }
        do {
            try Posix.setNonBlocking(socket.fd)
            if transport == .udp && local.ip.isUnspecified {
                try Posix.enablePacketInfo(socket.fd, ipv6: local.ip.family == .ipv6)
            }
        } catch {
            return false
        }
        return true
    }

    /// A connection waiting on a listening socket (client-facing or a TCP relayed address), accepted
    /// non-blocking and close-on-exec; `.wouldBlock` when the backlog is empty.
    func accept(from listener: Socket) throws(SystemError) -> IOOutcome<(Socket, TransportAddress)> {
        try listener.accept()
    }

    // MARK: relays

    /// A UDP relay socket bound to exactly `address` (RFC 8656 section 2.2, the relayed transport
    /// address). No SO_REUSEPORT: a relay port is one allocation's alone.
    func relay(_ address: TransportAddress, dontFragment: Bool) throws(SystemError) -> Socket {
        let socket = try Self.open(address, datagram: true)
        if dontFragment { try Posix.setDontFragment(socket.fd, ipv6: address.ip.family == .ipv6) }
        Posix.setBufferSizes(socket.fd, receive: io.relayReceiveBuffer, send: io.relaySendBuffer)
        try Posix.bind(socket.fd, TernSocketAddress(address))
        return socket
    }

    /// RFC 6062 section 5.2: the relayed address listens and connects out from the same port, so
    /// its sockets share the address with SO_REUSEADDR and SO_REUSEPORT.
    private func tcpRelaySocket(_ address: TransportAddress) throws(SystemError) -> Socket {
        let socket = try Self.open(address, datagram: false)
        try Posix.setOption(socket.fd, SOL_SOCKET, SO_REUSEADDR, 1)
        try Posix.setOption(socket.fd, SOL_SOCKET, tern_so_reuseport(), 1)
        try Posix.bind(socket.fd, TernSocketAddress(address))
        return socket
    }

    /// RFC 6062 section 5.1: a TCP relayed transport address, listening for peers' connections.
    func tcpRelayListener(_ address: TransportAddress) throws(SystemError) -> Socket {
        let socket = try tcpRelaySocket(address)
        try Posix.listen(socket.fd, backlog: 64)
        return socket
    }

    /// RFC 6062 section 5.2: a connection from the relayed address `from` to `peer`, started without
    /// blocking; `.inProgress` until the socket turns writable (`Socket.connectError`).
    func peerConnection(from: TransportAddress, to peer: TransportAddress) throws(SystemError) -> (Socket, ConnectOutcome) {
        let socket = try tcpRelaySocket(from)
        let outcome = try Posix.connect(socket.fd, to: TernSocketAddress(peer))
        return (socket, outcome)
    }

    // MARK: the event loop

    /// The worker's epoll set (the `epoll` event loop), owned like a socket.
    static func epollSet() throws(SystemError) -> Socket {
        Socket(owning: try Posix.epollCreate())
    }
}
