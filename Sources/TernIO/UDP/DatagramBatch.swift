#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import STUN

/// Preallocated recvmmsg/sendmmsg vectors: `count` receive slots and `sendCount` send slots of
/// `slotSize` bytes, with their iovecs, addresses and control buffers. Allocated once per worker;
/// nothing is allocated per packet. There may be more send slots than receive slots, so that
/// relay-to-client datagrams from several relay sockets' receive batches can wait for one sendmmsg
/// (`Worker.pendingToClients`).
final class DatagramBatch {
    let count: Int
    let sendCount: Int
    let slotSize: Int
    let controlSize: Int

    let recvHeaders: UnsafeMutablePointer<tern_mmsghdr>
    let sendHeaders: UnsafeMutablePointer<tern_mmsghdr>
    private let recvIov: UnsafeMutablePointer<iovec>
    let sendIov: UnsafeMutablePointer<iovec>
    let recvNames: UnsafeMutablePointer<sockaddr_storage>
    let sendNames: UnsafeMutablePointer<sockaddr_storage>
    private let recvControl: UnsafeMutableRawPointer
    private let sendControl: UnsafeMutableRawPointer
    private let recvData: UnsafeMutableRawPointer
    private let sendData: UnsafeMutableRawPointer

    init(count: Int, sendCount: Int? = nil, slotSize: Int) {
        self.count = count
        let sendCount = max(count, sendCount ?? count)
        self.sendCount = sendCount
        self.slotSize = slotSize
        self.controlSize = tern_pktinfo_space()
        recvHeaders = .allocate(capacity: count)
        sendHeaders = .allocate(capacity: sendCount)
        recvIov = .allocate(capacity: count)
        sendIov = .allocate(capacity: sendCount)
        recvNames = .allocate(capacity: count)
        sendNames = .allocate(capacity: sendCount)
        recvControl = .allocate(byteCount: controlSize * count, alignment: 16)
        sendControl = .allocate(byteCount: controlSize * sendCount, alignment: 16)
        recvData = .allocate(byteCount: slotSize * count, alignment: 16)
        sendData = .allocate(byteCount: slotSize * sendCount, alignment: 16)
        sendSocket = .allocate(capacity: sendCount)
        sendSocket.initialize(repeating: 0, count: sendCount)
        // Zero everything once: responses never carry stale bytes from an earlier packet's slot.
        recvData.initializeMemory(as: UInt8.self, repeating: 0, count: slotSize * count)
        sendData.initializeMemory(as: UInt8.self, repeating: 0, count: slotSize * sendCount)
        recvControl.initializeMemory(as: UInt8.self, repeating: 0, count: controlSize * count)
        sendControl.initializeMemory(as: UInt8.self, repeating: 0, count: controlSize * sendCount)
        for i in 0..<count {
            recvNames[i] = sockaddr_storage()
            recvIov[i] = iovec(iov_base: recvData + i * slotSize, iov_len: slotSize)
            recvHeaders[i] = tern_mmsghdr()
            recvHeaders[i].msg_hdr.msg_iov = recvIov + i
            recvHeaders[i].msg_hdr.msg_iovlen = 1
            recvHeaders[i].msg_hdr.msg_name = UnsafeMutableRawPointer(recvNames + i)
            recvHeaders[i].msg_hdr.msg_control = recvControl + i * controlSize
        }
        for i in 0..<sendCount {
            sendNames[i] = sockaddr_storage()
            sendIov[i] = iovec(iov_base: sendData + i * slotSize, iov_len: 0)
            sendHeaders[i] = tern_mmsghdr()
            sendHeaders[i].msg_hdr.msg_iov = sendIov + i
            sendHeaders[i].msg_hdr.msg_iovlen = 1
            sendHeaders[i].msg_hdr.msg_name = UnsafeMutableRawPointer(sendNames + i)
        }
        resetReceive()
    }

    deinit {
        recvHeaders.deallocate()
        sendHeaders.deallocate()
        recvIov.deallocate()
        sendIov.deallocate()
        recvNames.deallocate()
        sendNames.deallocate()
        recvControl.deallocate()
        sendControl.deallocate()
        recvData.deallocate()
        sendData.deallocate()
        sourceScratch.deallocate()
        sendSocket.deallocate()
    }

    /// The kernel rewrites name and control lengths and flags on every receive: restore them.
    @inline(__always)
    func resetReceive(upTo n: Int? = nil) {
        let limit = n ?? count
        var i = 0
        while i < limit {
            recvHeaders[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            recvHeaders[i].msg_hdr.msg_controllen = controlSize
            recvHeaders[i].msg_hdr.msg_flags = 0
            recvHeaders[i].msg_len = 0
            i += 1
        }
    }

    @inline(__always)
    func received(_ i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: recvData + i * slotSize, count: min(Int(recvHeaders[i].msg_len), slotSize))
    }

    @inline(__always)
    func truncated(_ i: Int) -> Bool {
        recvHeaders[i].msg_hdr.msg_flags & tern_msg_trunc() != 0
    }

    @inline(__always)
    func sendSlot(_ i: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: sendData + i * slotSize, count: slotSize)
    }

    /// Prepares send slot `i` to go to `dest` (copied from receive slot `from`) with `length` bytes,
    /// from local address `source` when given (IP_PKTINFO/IPV6_PKTINFO for wildcard-bound sockets).
    @inline(__always)
    func prepareSend(_ i: Int, replyingTo from: Int, length: Int, source: UnsafePointer<sockaddr_storage>?) {
        sendNames[i] = recvNames[from]
        sendHeaders[i].msg_hdr.msg_namelen = recvHeaders[from].msg_hdr.msg_namelen
        fillSend(i, length: length, source: source)
    }

    /// Length, cleared flags, and the packet-info control message naming `source` (or none).
    @inline(__always)
    private func fillSend(_ i: Int, length: Int, source: UnsafePointer<sockaddr_storage>?) {
        sendIov[i].iov_len = length
        sendHeaders[i].msg_len = 0
        sendHeaders[i].msg_hdr.msg_flags = 0
        if let source {
            let control = sendControl + i * controlSize
            let used = tern_write_pktinfo(control, controlSize, source)
            sendHeaders[i].msg_hdr.msg_control = used > 0 ? control : nil
            sendHeaders[i].msg_hdr.msg_controllen = used
        } else {
            sendHeaders[i].msg_hdr.msg_control = nil
            sendHeaders[i].msg_hdr.msg_controllen = 0
        }
    }

    /// Which client-facing socket each send slot goes out of (relay-to-client batches).
    let sendSocket: UnsafeMutablePointer<Int>
    /// Scratch for one source address.
    private let sourceScratch = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)

    /// Prepares send slot `i` to go to `dest`, from `source` when given, out of client socket `socket`.
    @inline(__always)
    func prepareSend(_ i: Int, to dest: TransportAddress, length: Int, source: TransportAddress?, socket: Int) {
        sendHeaders[i].msg_hdr.msg_namelen = TernSocketAddress.write(dest, into: sendNames + i)
        sendSocket[i] = socket
        if let source {
            _ = TernSocketAddress.write(source, into: sourceScratch)
            fillSend(i, length: length, source: UnsafePointer(sourceScratch))
        } else {
            fillSend(i, length: length, source: nil)
        }
    }

    /// The local address a datagram arrived at, from its packet-info cmsg.
    @inline(__always)
    func localAddress(_ i: Int, port: UInt16, into out: UnsafeMutablePointer<sockaddr_storage>) -> Bool {
        withUnsafePointer(to: &recvHeaders[i].msg_hdr) { tern_read_pktinfo($0, out, port.bigEndian) } == 1
    }
}
