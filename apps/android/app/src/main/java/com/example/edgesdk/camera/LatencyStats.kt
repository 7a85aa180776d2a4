package com.example.edgesdk.camera

/** Running p50/p90 (numpy's linear interpolation, the numbers `edge-sdk bench` prints) and a moving FPS. */
class LatencyStats(private val capacity: Int = 1000, private val fpsWindow: Int = 30) {
    private val values = ArrayDeque<Double>()
    private val stamps = ArrayDeque<Long>()
    var count = 0
        private set

    @Synchronized
    fun add(ms: Double, nowNanos: Long = System.nanoTime()) {
        values.addLast(ms)
        if (values.size > capacity) values.removeFirst()
        stamps.addLast(nowNanos)
        if (stamps.size > fpsWindow + 1) stamps.removeFirst()
        count++
    }

    @Synchronized
    fun percentile(q: Double): Double? {
        if (values.isEmpty()) return null
        val s = values.sorted()
        val pos = (s.size - 1) * q / 100.0
        val lo = kotlin.math.floor(pos).toInt()
        val hi = kotlin.math.ceil(pos).toInt()
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)
    }

    @Synchronized
    fun fps(): Double =
        if (stamps.size < 2 || stamps.last() == stamps.first()) 0.0
        else (stamps.size - 1) * 1e9 / (stamps.last() - stamps.first())

    @Synchronized
    fun reset() {
        values.clear(); stamps.clear(); count = 0
    }
}
