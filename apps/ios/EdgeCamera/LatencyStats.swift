import Foundation

/// Running latency statistics: p50/p90 with numpy's linear interpolation (the same numbers as `edge-sdk bench`)
/// over the last `capacity` frames, and a moving FPS.
struct LatencyStats {
    private(set) var values: [Double] = []
    private var stamps: [CFTimeInterval] = []
    let capacity: Int
    let fpsWindow: Int

    init(capacity: Int = 1000, fpsWindow: Int = 30) {
        self.capacity = capacity
        self.fpsWindow = fpsWindow
    }

    mutating func add(_ ms: Double, at time: CFTimeInterval) {
        values.append(ms)
        if values.count > capacity { values.removeFirst() }
        stamps.append(time)
        if stamps.count > fpsWindow + 1 { stamps.removeFirst() }
    }

    func percentile(_ q: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        let pos = Double(s.count - 1) * q / 100
        let lo = Int(pos.rounded(.down)), hi = Int(pos.rounded(.up))
        return s[lo] + (s[hi] - s[lo]) * (pos - Double(lo))
    }

    var p50: Double? { percentile(50) }
    var p90: Double? { percentile(90) }
    var fps: Double {
        guard stamps.count > 1, let first = stamps.first, let last = stamps.last, last > first else { return 0 }
        return Double(stamps.count - 1) / (last - first)
    }
}
