// Running latency statistics: numpy-style percentiles (linear interpolation) so the page, `edge-sdk serve` and
// `edge-sdk bench` agree on what "p90" means, and a moving FPS over the last frames.

/** numpy.percentile(values, q) with the default 'linear' method. */
export function percentile(values, q) {
  if (!values.length) return null;
  const s = Float64Array.from(values).sort();
  const pos = (s.length - 1) * q / 100;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export class RunningStats {
  constructor(maxKept = 1000, fpsWindow = 30) {
    this.values = [];
    this.maxKept = maxKept;
    this.stamps = [];
    this.fpsWindow = fpsWindow;
    this.count = 0;
  }

  add(ms, now = performance.now()) {
    this.values.push(ms);
    if (this.values.length > this.maxKept) this.values.shift();
    this.stamps.push(now);
    if (this.stamps.length > this.fpsWindow + 1) this.stamps.shift();
    this.count += 1;
  }

  get p50() { return percentile(this.values, 50); }
  get p90() { return percentile(this.values, 90); }

  /** Frames per second over the last `fpsWindow` frames (everything: capture, preprocessing, inference, drawing). */
  get fps() {
    const s = this.stamps;
    return s.length > 1 ? (s.length - 1) * 1000 / (s[s.length - 1] - s[0]) : 0;
  }

  reset() { this.values = []; this.stamps = []; this.count = 0; }
}
