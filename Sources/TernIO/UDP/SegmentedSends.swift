#if canImport(Glibc)
import Glibc
#endif
import CTernShims

/// Relay-to-client datagrams of the shared batch's send slots, merged for one sendmmsg: a run of
/// consecutive slots to the same client from the same local address, all one size but a shorter
/// last, becomes one message with a UDP_SEGMENT control message, which the kernel splits back into
/// the same datagrams (UDP GSO per message, Linux 4.18+). The client receives exactly what it would
/// have without merging; the relay pays one pass through the IP output path for the run instead of one
/// per datagram. Such runs are what a peer's packet train looks like (a video frame: equal-size
/// packets, back to back), and both datagrams of a pair read from one relay socket.
///
/// Nothing is copied: a merged message's iovecs are the slots' own, consecutive in memory.
final class SegmentedSends {
    let capacity: Int
    let headers: UnsafeMutablePointer<tern_mmsghdr>
    /// The first send slot of each message (its datagrams are slots first ..< first + iovlen).
    let firstSlot: UnsafeMutablePointer<Int>
    private let control: UnsafeMutableRawPointer
    private let controlSize: Int
    /// Off when the kernel refused a segmented send (no UDP_SEGMENT): messages are never merged again.
    var enabled: Bool

    init(capacity: Int, enabled: Bool) {
        self.capacity = capacity
        self.enabled = enabled
        headers = .allocate(capacity: capacity)
        firstSlot = .allocate(capacity: capacity)
        controlSize = tern_pktinfo_space() + tern_segment_space()
        control = .allocate(byteCount: controlSize * capacity, alignment: 16)
        control.initializeMemory(as: UInt8.self, repeating: 0, count: controlSize * capacity)
        for i in 0..<capacity { headers[i] = tern_mmsghdr() }
    }

    deinit {
        headers.deallocate()
        firstSlot.deallocate()
        control.deallocate()
    }

    /// Builds the messages for send slots [start, end) of `batch`; returns how many there are, or nil
    /// when no two slots could be merged (then the slots' own headers serve as they are).
    func build(_ batch: DatagramBatch, start: Int, end: Int) -> Int? {
        guard enabled else { return nil }
        var count = 0, i = start, merged = false
        while i < end {
            let k = runLength(batch, start: i, end: end)
            let h = headers + count
            h.pointee = batch.sendHeaders[i]
            firstSlot[count] = i
            if k > 1 {
                let slot = control + count * controlSize
                let used = batch.sendHeaders[i].msg_hdr.msg_controllen
                if used > 0 { memcpy(slot, batch.sendHeaders[i].msg_hdr.msg_control, used) }
                let total = tern_append_segment(slot, used, controlSize, UInt16(batch.sendIov[i].iov_len))
                if total > 0 {
                    h.pointee.msg_hdr.msg_iov = batch.sendIov + i
                    h.pointee.msg_hdr.msg_iovlen = k
                    h.pointee.msg_hdr.msg_control = slot
                    h.pointee.msg_hdr.msg_controllen = total
                    merged = true
                    i &+= k
                    count &+= 1
                    continue
                }
            }
            i &+= 1
            count &+= 1
        }
        return merged ? count : nil
    }

    /// How many slots from `start` can leave as one message: `SegmentRun`'s rule, with the same
    /// client-facing socket and control message (source address) throughout.
    private func runLength(_ batch: DatagramBatch, start: Int, end: Int) -> Int {
        let first = batch.sendHeaders[start].msg_hdr
        return SegmentRun.length(count: end - start, size: { batch.sendIov[start + $0].iov_len }) { j in
            let h = batch.sendHeaders[start + j].msg_hdr
            return batch.sendSocket[start + j] == batch.sendSocket[start]
                && h.msg_namelen == first.msg_namelen && memcmp(h.msg_name, first.msg_name, Int(first.msg_namelen)) == 0
                && h.msg_controllen == first.msg_controllen
                && (first.msg_controllen == 0 || memcmp(h.msg_control, first.msg_control, first.msg_controllen) == 0)
        }
    }
}

/// UDP GSO's rule for one segmented send (`UDP_SEGMENT`, Linux 4.18+), for the sends to peers
/// (`PeerSendBatch`) and to clients (`SegmentedSends`): datagrams to one destination, every one the
/// size of the first except a shorter last, at most 64 of them and 65,000 bytes counted at the first's
/// size. None may be empty: the kernel makes no segment of an empty iovec, so the datagram would vanish.
enum SegmentRun {
    static let maxSegments = 64, maxBytes = 65_000

    /// How many of datagrams 0..<count, from the first, can leave as one segmented send (at least 1).
    @inline(__always)
    static func length(count: Int, size: (Int) -> Int, sameDestination: (Int) -> Bool) -> Int {
        let first = size(0)
        guard first > 0 else { return 1 }
        var j = 1
        while j < count && j < maxSegments && first &* (j &+ 1) <= maxBytes {
            let s = size(j)
            guard s > 0, s <= first, sameDestination(j) else { break }
            j &+= 1
            if s < first { break }  // a shorter datagram ends the run
        }
        return j
    }
}
