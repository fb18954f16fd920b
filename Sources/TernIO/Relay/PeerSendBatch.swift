#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import STUN

/// Client-to-peer datagrams collected while a UDP endpoint drains one recvmmsg batch, sent when the
/// batch is done: consecutive datagrams through the same relay socket leave with one sendmmsg, and a
/// run of equal-size datagrams to the same peer (a media stream) with one UDP GSO sendmsg that the
/// kernel segments. Payloads are not copied: each entry points into the receive batch, which stays
/// untouched until the flush.
final class PeerSendBatch {
    let capacity: Int
    private let headers: UnsafeMutablePointer<tern_mmsghdr>
    private let iovecs: UnsafeMutablePointer<iovec>
    private let names: UnsafeMutablePointer<sockaddr_storage>
    private let fds: UnsafeMutablePointer<Int32>
    private(set) var count = 0
    /// True while a UDP endpoint drains a batch (then sends are collected instead of made at once).
    var collecting = false
    /// Off after the kernel refused a GSO send (no UDP_SEGMENT support): plain sendmmsg from then on.
    var gso: Bool

    init(capacity: Int, gso: Bool) {
        self.capacity = capacity
        self.gso = gso
        headers = .allocate(capacity: capacity)
        iovecs = .allocate(capacity: capacity)
        names = .allocate(capacity: capacity)
        fds = .allocate(capacity: capacity)
        for i in 0..<capacity {
            headers[i] = tern_mmsghdr()
            headers[i].msg_hdr.msg_name = UnsafeMutableRawPointer(names + i)
            headers[i].msg_hdr.msg_iov = iovecs + i
            headers[i].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        headers.deallocate()
        iovecs.deallocate()
        names.deallocate()
        fds.deallocate()
    }

    var isFull: Bool { count == capacity }

    /// Queues one datagram; the caller flushes first when `isFull`.
    @inline(__always)
    func add(fd: Int32, peer: TransportAddress, payload: UnsafeRawBufferPointer) {
        let i = count
        fds[i] = fd
        headers[i].msg_hdr.msg_namelen = TernSocketAddress.write(peer, into: &names[i])
        iovecs[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: payload.baseAddress), iov_len: payload.count)
        count = i &+ 1
    }

    /// Sends everything queued; returns (sent, bytes, dropped).
    func flush() -> (sent: Int, bytes: Int, dropped: Int) {
        var sent = 0, bytes = 0, dropped = 0
        var start = 0
        while start < count {
            let fd = fds[start]
            var end = start &+ 1
            while end < count && fds[end] == fd { end &+= 1 }
            let r = sendRun(fd: fd, start: start, end: end)
            sent &+= r.sent
            bytes &+= r.bytes
            dropped &+= (end - start) - r.sent
            start = end
        }
        count = 0
        return (sent, bytes, dropped)
    }

    private func sendRun(fd: Int32, start: Int, end: Int) -> (sent: Int, bytes: Int) {
        let n = end - start
        if gso && n >= 2, let segment = gsoSegment(start: start, end: end) {
            do {
                let name = UnsafeRawPointer(names + start).assumingMemoryBound(to: sockaddr.self)
                if case .done(let bytes) = try Posix.sendSegmented(fd, iovecs + start, count: n, to: name,
                                                                   length: headers[start].msg_hdr.msg_namelen,
                                                                   segment: UInt16(segment)) {
                    return (n, bytes)
                }
            } catch {
                let e = error.errno
                if e == EIO || e == EINVAL || e == ENOPROTOOPT || e == EOPNOTSUPP { gso = false }
            }
            // Fall through to sendmmsg (also for EAGAIN: it sends what fits).
        }
        var sent = 0, bytes = 0
        while sent < n {
            let r: Int
            do {
                guard case .done(let k) = try Posix.sendmmsg(fd, headers + start + sent, count: n - sent), k > 0 else {
                    break  // EAGAIN: the send buffer is full
                }
                r = k
            } catch {
                // An ICMP error from an earlier datagram: skip one and go on.
                let e = error.errno
                if e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH { sent += 1; continue }
                break
            }
            var j = 0
            while j < r { bytes &+= iovecs[start + sent + j].iov_len; j &+= 1 }
            sent += r
        }
        return (sent, bytes)
    }

    /// The segment size when the run [start, end) can go as one GSO send: all of it to the same peer
    /// under `SegmentRun`'s rule.
    private func gsoSegment(start: Int, end: Int) -> Int? {
        let n = end - start
        let nameLength = Int(headers[start].msg_hdr.msg_namelen)
        let run = SegmentRun.length(count: n, size: { iovecs[start + $0].iov_len }) { j in
            Int(headers[start + j].msg_hdr.msg_namelen) == nameLength && memcmp(names + start, names + start + j, nameLength) == 0
        }
        return run == n ? iovecs[start].iov_len : nil
    }
}
