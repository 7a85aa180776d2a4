// Preprocessing from a bundle's manifest.json, bit-exact with edge_sdk.preprocess (Python + OpenCV).
//
// Why bit-exact: the page must give the same numbers as the SDK for the same decoded image, so a latency or
// accuracy difference seen on a phone is the runtime's, never the preprocessing's. The SDK resizes the shorter
// side with cv2.resize (INTER_AREA when shrinking, INTER_LINEAR when enlarging), center-crops, scales to [0, 1] and
// normalizes in float32; the functions below reproduce OpenCV 4/5's uint8 arithmetic (fixed-point bilinear
// coefficients, float32 area weights, round-half-even) and numpy's float32 steps with Math.fround.
// No DOM here: the same module runs in the page and in Node (tests/test_web.py checks it against the SDK).

const f32 = Math.fround;
const COEF_BITS = 11;
const COEF_SCALE = 1 << COEF_BITS; // OpenCV's INTER_RESIZE_COEF_SCALE
const INT_RANGES = { int8: [-128, 127], uint8: [0, 255] };

/** Round half to even, like cvRound / lrint / numpy.rint. */
export function rint(v) {
  const r = Math.round(v);
  return (r - v === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

const clamp = (v, lo, hi) => (v < lo ? lo : v > hi ? hi : v);

/** Bilinear taps for one axis: OpenCV's source index and fixed-point weights per output index. */
function linearTaps(ssize, dsize, clampWeights) {
  const scale = 1 / (dsize / ssize);
  const ofs = new Int32Array(dsize);
  const w0 = new Int32Array(dsize);
  const w1 = new Int32Array(dsize);
  for (let d = 0; d < dsize; d++) {
    let f = f32((d + 0.5) * scale - 0.5);
    let s = Math.floor(f);
    f = f32(f - s);
    if (clampWeights && s < 0) { f = 0; s = 0; }
    if (clampWeights && s >= ssize - 1) { f = 0; s = ssize - 1; }
    ofs[d] = s;
    w0[d] = rint(f32(f32(1 - f) * COEF_SCALE));
    w1[d] = rint(f32(f * COEF_SCALE));
  }
  return { ofs, w0, w1 };
}

/** cv2.resize(..., INTER_LINEAR) of an interleaved uint8 image; `src` has `cs` channels, `c` are kept. */
export function resizeLinear(src, w, h, c, W, H, cs = c) {
  const xt = linearTaps(w, W, true);   // columns: OpenCV clamps the weights at the borders
  const yt = linearTaps(h, H, false);  // rows: it clamps only the row index
  const rows = new Int32Array(h * W * c);
  for (let y = 0; y < h; y++) {
    for (let d = 0; d < W; d++) {
      const s0 = xt.ofs[d], s1 = Math.min(s0 + 1, w - 1);
      for (let k = 0; k < c; k++) {
        rows[(y * W + d) * c + k] = src[(y * w + s0) * cs + k] * xt.w0[d] + src[(y * w + s1) * cs + k] * xt.w1[d];
      }
    }
  }
  const out = new Uint8Array(H * W * c);
  const n = W * c;
  for (let d = 0; d < H; d++) {
    const r0 = clamp(yt.ofs[d], 0, h - 1) * n, r1 = clamp(yt.ofs[d] + 1, 0, h - 1) * n;
    const b0 = yt.w0[d], b1 = yt.w1[d];
    for (let i = 0; i < n; i++) {
      // OpenCV's SIMD vertical pass: (S >> 4) * beta >> 16 per row, then a rounding shift by 2
      const v = (Math.floor((rows[r0 + i] >> 4) * b0 / 65536) + Math.floor((rows[r1 + i] >> 4) * b1 / 65536) + 2) >> 2;
      out[d * n + i] = clamp(v, 0, 255);
    }
  }
  return out;
}

/** OpenCV's area table for one axis, as typed arrays of (dst index, src index, float32 weight). */
function areaTaps(ssize, dsize, scale) {
  const di = [], si = [], wt = [];
  const push = (d, s, w) => { di.push(d); si.push(s); wt.push(w); };
  for (let dx = 0; dx < dsize; dx++) {
    const fsx1 = dx * scale, fsx2 = fsx1 + scale;
    const cell = Math.min(scale, ssize - fsx1);
    let sx1 = Math.ceil(fsx1), sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, ssize - 1);
    sx1 = Math.min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) push(dx, sx1 - 1, f32((sx1 - fsx1) / cell));
    for (let sx = sx1; sx < sx2; sx++) push(dx, sx, f32(1 / cell));
    if (fsx2 - sx2 > 1e-3) push(dx, sx2, f32(Math.min(Math.min(fsx2 - sx2, 1), cell) / cell));
  }
  return { di: Int32Array.from(di), si: Int32Array.from(si), wt: Float32Array.from(wt), n: di.length };
}

/** cv2.resize(..., INTER_AREA) for shrinking: the integer-ratio fast path and the general weighted path.
 *  `src` has `cs` interleaved channels (4 for canvas RGBA); the first `c` are resized. */
export function resizeArea(src, w, h, c, W, H, cs = c) {
  const sx = w / W, sy = h / H;
  const ix = Math.round(sx), iy = Math.round(sy);
  const out = new Uint8Array(H * W * c);
  if (Math.abs(sx - ix) < Number.EPSILON && Math.abs(sy - iy) < Number.EPSILON) {
    const inv = f32(1 / (ix * iy));
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        for (let k = 0; k < c; k++) {
          let s = 0;
          for (let j = 0; j < iy; j++) for (let i = 0; i < ix; i++) s += src[((y * iy + j) * w + x * ix + i) * cs + k];
          out[(y * W + x) * c + k] = ix === 2 && iy === 2 ? (s + 2) >> 2 : clamp(rint(f32(s * inv)), 0, 255);
        }
      }
    }
    return out;
  }
  const xt = areaTaps(w, W, sx), yt = areaTaps(h, H, sy);
  const n = W * c;
  const buf = new Float32Array(n), sum = new Float32Array(n);
  let prev = yt.di[0];
  const flush = (dy) => { for (let i = 0; i < n; i++) out[dy * n + i] = clamp(rint(sum[i]), 0, 255); };
  const xdi = xt.di, xsi = xt.si, xwt = xt.wt, xn = xt.n;
  for (let j = 0; j < yt.n; j++) {
    const dy = yt.di[j], beta = yt.wt[j], base = yt.si[j] * w * cs;
    buf.fill(0);
    if (c === 3) {
      for (let k = 0; k < xn; k++) {
        const d = xdi[k] * 3, s = base + xsi[k] * cs, a = xwt[k];
        buf[d] += f32(src[s] * a);
        buf[d + 1] += f32(src[s + 1] * a);
        buf[d + 2] += f32(src[s + 2] * a);
      }
    } else {
      for (let k = 0; k < xn; k++) {
        const d = xdi[k] * c, s = base + xsi[k] * cs, a = xwt[k];
        for (let ch = 0; ch < c; ch++) buf[d + ch] += f32(src[s + ch] * a);
      }
    }
    if (dy !== prev) {
      flush(prev);
      for (let i = 0; i < n; i++) sum[i] = f32(beta * buf[i]);
      prev = dy;
    } else {
      for (let i = 0; i < n; i++) sum[i] += f32(beta * buf[i]);
    }
  }
  flush(prev);
  return out;
}

/** RGBA (canvas ImageData) -> packed RGB. */
export function rgbaToRgb(rgba, w, h) {
  const out = new Uint8Array(w * h * 3);
  for (let i = 0, j = 0; i < w * h * 4; i += 4, j += 3) {
    out[j] = rgba[i]; out[j + 1] = rgba[i + 1]; out[j + 2] = rgba[i + 2];
  }
  return out;
}

/** edge_sdk.preprocess.resize_center_crop: shorter side -> `resize`, center crop `crop`; RGB uint8 out.
 *  `src` is RGB (cs = 3) or canvas RGBA (cs = 4, alpha ignored). */
export function resizeCenterCrop(src, w, h, resize, crop, cs = 3) {
  const scale = resize / Math.min(h, w);
  const nh = Math.max(crop, rint(h * scale)), nw = Math.max(crop, rint(w * scale)); // Python's round()
  let img;
  if (nh !== h || nw !== w) {
    img = scale < 1 ? resizeArea(src, w, h, 3, nw, nh, cs) : resizeLinear(src, w, h, 3, nw, nh, cs);
  } else {
    img = cs === 3 ? src : rgbaToRgb(src, w, h);
  }
  const top = (nh - crop) >> 1, left = (nw - crop) >> 1;
  const out = new Uint8Array(crop * crop * 3);
  for (let y = 0; y < crop; y++) {
    out.set(img.subarray(((top + y) * nw + left) * 3, ((top + y) * nw + left + crop) * 3), y * crop * 3);
  }
  return out;
}

/** edge_sdk.preprocess.normalize: float32 (x / 255 - mean) / std, returned in HWC order (NHWC batch of one). */
export function normalize(rgbCrop, mean, std) {
  const out = new Float32Array(rgbCrop.length);
  const m = mean.map(f32), s = std.map(f32);
  for (let i = 0; i < rgbCrop.length; i++) {
    const k = i % 3;
    out[i] = f32(f32(f32(rgbCrop[i] / 255) - m[k]) / s[k]);
  }
  return out;
}

/** HWC -> CHW for NCHW model files. */
export function hwcToChw(x, size) {
  const out = new Float32Array(x.length);
  const plane = size * size;
  for (let p = 0; p < plane; p++) for (let k = 0; k < 3; k++) out[k * plane + p] = x[p * 3 + k];
  return out;
}

/** Predictor._to_model_input for one image: pixels for in-model normalization, layout, int8/uint8 quantization. */
export function toModelInput(normHwc, spec) {
  const size = spec.crop;
  let x = normHwc;
  if (spec.normalization_in_model) {
    const m = spec.mean.map(f32), s = spec.std.map(f32);
    x = new Float32Array(normHwc.length);
    for (let i = 0; i < x.length; i++) x[i] = f32(f32(f32(normHwc[i] * s[i % 3]) + m[i % 3]) * 255);
  }
  if (spec.layout === 'NCHW') x = hwcToChw(x, size);
  const range = INT_RANGES[spec.dtype];
  if (!range) return x;
  const q = spec.quantization;
  const out = spec.dtype === 'int8' ? new Int8Array(x.length) : new Uint8Array(x.length);
  const scale = q ? f32(q.scale) : 0;
  for (let i = 0; i < x.length; i++) {
    const v = q ? rint(f32(x[i] / scale)) + q.zero_point : rint(x[i]);
    out[i] = clamp(v, range[0], range[1]);
  }
  return out;
}

/** Predictor._from_model_output: dequantized float32 logits (or probabilities). */
export function fromModelOutput(y, outSpec) {
  const q = outSpec.quantization;
  const out = new Float32Array(y.length);
  for (let i = 0; i < y.length; i++) out[i] = q ? f32(f32(y[i] - q.zero_point) * f32(q.scale)) : y[i];
  return out;
}

/** The whole chain for one decoded RGBA frame: {normalized HWC float32, model input typed array, shape}. */
export function preprocessRgba(rgba, w, h, spec) {
  const crop = resizeCenterCrop(rgba, w, h, spec.resize, spec.crop, 4);
  const norm = normalize(crop, spec.mean, spec.std);
  const shape = spec.layout === 'NCHW' ? [1, 3, spec.crop, spec.crop] : [1, spec.crop, spec.crop, 3];
  return { normalized: norm, input: toModelInput(norm, spec), shape };
}

/** Softmax in float64 (edge_sdk.runtime.softmax) unless the model already outputs probabilities. */
export function probabilities(logits, kind) {
  if (kind === 'probabilities') return Array.from(logits);
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / total);
}

/** Top-k [{index, label, prob}] sorted by probability, ties by index (numpy's stable argsort). */
export function topK(probs, labels, k) {
  const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
  return order.slice(0, Math.max(1, k)).map((i) => ({
    index: i, label: labels && i < labels.length ? labels[i] : `class_${i}`, prob: probs[i],
  }));
}
