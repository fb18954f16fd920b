/// A fast path below the event loop that relays some of an allocation's traffic itself: the
/// kernel's, with `io.offload` (Sources/TernIO/Offload). The core stays the only place TURN is
/// decided; the fast path holds copies of its decisions and is told whenever they change.
///
/// Every call happens on the queue of the worker that owns the allocation.
public protocol FastPath: AnyObject {
    /// The allocation's channels, permissions or lifetime changed (ChannelBind, CreatePermission,
    /// Refresh, or the once-a-second expiry): make the fast path's entries match what the allocation
    /// relays now, each with its own expiry (RFC 8656 sections 9 and 11: a channel relays only while
    /// it and the permission for its peer's IP both live).
    func update(_ allocation: Allocation, now: UInt64)
    /// The allocation ends: its entries go. Returns what they carried since the last `collect`.
    func remove(_ allocation: Allocation) -> AllocationCounters
    /// What the fast path carried since the last call, per allocation id (once a tick, so `/stats`
    /// and the admin API count every packet whichever path carried it).
    func collect(_ body: (UInt64, AllocationCounters) -> Void)
}
