#if canImport(Glibc)
import Glibc
#endif

/// xorshift64*: cheap and reproducible (seeded), good enough for jitter and sizes.
struct FastRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func inRange(_ r: ClosedRange<Int>) -> Int { r.lowerBound + Int(next() % UInt64(r.count)) }
}

/// Independent jittered streams (the mix's and the two-way load's): stream s is due every
/// `intervals[s]` ns on average, each interval that mean times 1 +- `jitter` (uniformly), from a
/// random phase. A binary min-heap of the next due times (CLOCK_MONOTONIC ns).
struct StreamSchedule {
    let intervals: [Double]
    let jitter: Double
    var random: FastRandom
    private var heap: [(due: UInt64, stream: Int32)] = []

    init(intervals: [Double], jitter: Double, seed: UInt64) {
        self.intervals = intervals
        self.jitter = jitter
        random = FastRandom(seed: seed)
        heap.reserveCapacity(intervals.count)
    }

    /// Events per second over all streams.
    var eventsPerSecond: Double { intervals.reduce(0.0) { $0 + 1e9 / $1 } }

    /// Each stream's first event falls at a random point of its first interval after `start`.
    mutating func start(at start: UInt64) {
        heap.removeAll(keepingCapacity: true)
        for s in intervals.indices { push(start + UInt64(intervals[s] * random.unit()), Int32(s)) }
    }

    var nextDue: UInt64? { heap.first?.due }

    /// The stream whose event is due at `now` (the earliest), already rescheduled one jittered
    /// interval after that event's due time (so a late generator catches up); nil when none is due.
    mutating func popDue(_ now: UInt64) -> Int? {
        guard let top = heap.first, top.due <= now else { return nil }
        let s = Int(top.stream)
        heap[0].due = top.due + UInt64(max(1, intervals[s] * (1 + jitter * (2 * random.unit() - 1))))
        siftDown(0)
        return s
    }

    private mutating func push(_ due: UInt64, _ stream: Int32) {
        heap.append((due, stream))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if heap[parent].due <= heap[i].due { break }
            heap.swapAt(parent, i)
            i = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count && heap[l].due < heap[m].due { m = l }
            if r < heap.count && heap[r].due < heap[m].due { m = r }
            if m == i { return }
            heap.swapAt(m, i)
            i = m
        }
    }

    /// Sleeps until the next due event, but at least `tick` us and at most 1 ms: every wake-up costs
    /// the generator's core (more so in a VM), so events due within a tick leave together (each
    /// still its own send). The timer adds ~50 us.
    func sleepUntilDue(now: UInt64, tickMicroseconds: UInt64) {
        let next = nextDue ?? now + 1_000_000
        usleep(useconds_t(min(1000, max(tickMicroseconds, next > now ? (next - now) / 1000 : 0))))
    }
}
