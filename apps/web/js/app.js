// The camera page: opens the camera, classifies every frame with the bundle, shows top-k, per-frame latency, FPS
// and running p50/p90 against the budget, and (under `edge-sdk serve`) posts its timings back to the terminal.
import { Engine, availableBackends, deviceInfo } from './engine.js';
import { listCameras, openCamera, stopCamera } from './camera.js';
import { preprocessRgba, probabilities, topK } from './preprocess.js';
import { RunningStats } from './stats.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const TOP_K = 5;
const POST_EVERY_MS = 500;

const state = {
  config: { budget_ms: 50, report: false }, manifest: null, labels: null, engine: null, device: null,
  running: false, frames: 0, pending: [], lastPost: 0, posting: false, serverDone: false,
  inference: new RunningStats(), total: new RunningStats(), last: null, session: Math.random().toString(36).slice(2, 10),
};
const canvas = document.createElement('canvas');
const ctx = canvas.getContext('2d', { willReadFrequently: true });

async function getJson(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

/** Server settings (`edge-sdk serve`), else config.json of a static copy (`edge-sdk app web`), else defaults. */
async function loadConfig() {
  for (const url of ['api/config', 'config.json']) {
    try { return { ...state.config, ...(await getJson(url)) }; } catch { /* try the next one */ }
  }
  return state.config;
}

function showError(msg) {
  $('error').textContent = msg;
  $('error').hidden = false;
  $('status').textContent = 'error';
  document.body.dataset.state = 'error';
}

/** The page runs .tflite bundles only; anything else gets the command that makes one. */
function checkBundle(m) {
  if (m.target !== 'tflite' || !String(m.file).endsWith('.tflite')) {
    const name = m.model?.name || 'MODEL';
    throw new Error(`this page runs LiteRT .tflite bundles, not ${m.target}; make one with: ` +
      `edge-sdk convert ${name} --target tflite --nhwc`);
  }
  const bad = [m.input.dtype, m.output.dtype].filter((d) => !['float32', 'uint8', 'int32'].includes(d || 'float32'));
  if (bad.length) {
    throw new Error(`LiteRT.js cannot feed ${bad.join('/')} tensors; make a float-I/O bundle with: ` +
      `edge-sdk convert ${m.model?.name || 'MODEL'} --target tflite --nhwc`);
  }
}

/** Decoded RGBA pixels of a video frame or an image, at their natural size (the model sees the full frame). */
function pixels(source, w, h) {
  canvas.width = w;
  canvas.height = h;
  ctx.drawImage(source, 0, 0, w, h);
  return ctx.getImageData(0, 0, w, h, { colorSpace: 'srgb' }).data;
}

/** Classify one decoded frame; returns {top, logits, input, timings}. */
async function classify(source, w, h) {
  const t0 = performance.now();
  const rgba = pixels(source, w, h);
  const { normalized, input, shape } = preprocessRgba(rgba, w, h, state.manifest.input);
  const t1 = performance.now();
  const logits = await state.engine.run(input, shape);
  const t2 = performance.now();
  const top = topK(probabilities(logits, state.manifest.output.kind), state.labels, TOP_K);
  const t3 = performance.now();
  return {
    top, logits: Array.from(logits), normalized, input,
    timings: { preprocess_ms: t1 - t0, inference_ms: t2 - t1, total_ms: t3 - t0 },
  };
}

function fmt(v, digits = 1) { return v == null || !isFinite(v) ? '–' : v.toFixed(digits); }

function render(result, fps) {
  const budget = state.config.budget_ms;
  $('topk').replaceChildren(...result.top.map((t) => {
    const li = document.createElement('li');
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.style.width = `${Math.round(100 * t.prob)}%`;
    const text = document.createElement('span');
    text.className = 'label';
    text.textContent = `${t.label} ${(100 * t.prob).toFixed(1)}%`;
    li.append(bar, text);
    return li;
  }));
  const t = result.timings;
  $('lat-frame').textContent = `${fmt(t.inference_ms, 2)} ms`;
  $('lat-frame').classList.toggle('over', t.inference_ms > budget);
  $('lat-pre').textContent = `${fmt(t.preprocess_ms, 2)} ms`;
  $('lat-total').textContent = `${fmt(t.total_ms, 2)} ms`;
  $('fps').textContent = fmt(fps);
  const s = state.inference;
  $('p50').textContent = `${fmt(s.p50, 2)} ms`;
  $('p90').textContent = `${fmt(s.p90, 2)} ms`;
  const ok = s.p90 != null && s.p90 <= budget;
  $('verdict').textContent = s.p90 == null ? '–' : ok ? `within ${budget} ms` : `OVER ${budget} ms`;
  $('verdict').className = s.p90 == null ? '' : ok ? 'ok' : 'over';
  $('frames').textContent = String(state.frames);
}

/** Timings go back to `edge-sdk serve` in small batches; a static copy of the page posts nothing. */
async function postTimings(force = false) {
  if (!state.config.report || state.serverDone || state.posting || !state.pending.length) return;
  if (!force && performance.now() - state.lastPost < POST_EVERY_MS) return;
  const frames = state.pending.splice(0);
  state.posting = true;
  state.lastPost = performance.now();
  try {
    const r = await fetch('api/frames', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ session: state.session, device: state.device, load_ms: state.engine.loadMs,
        first_ms: state.firstMs, frames }),
    });
    if (r.ok && (await r.json()).done) state.serverDone = true;
  } catch { state.pending.unshift(...frames); } finally { state.posting = false; }
}

async function cameraLoop() {
  const video = $('video');
  const next = (fn) => (video.requestVideoFrameCallback ? video.requestVideoFrameCallback(fn) : requestAnimationFrame(fn));
  const step = async () => {
    if (!state.running) return;
    if (video.videoWidth && video.readyState >= 2) {
      try {
        const r = await classify(video, video.videoWidth, video.videoHeight);
        state.inference.add(r.timings.inference_ms);
        state.total.add(r.timings.total_ms);
        state.frames += 1;
        state.last = r;
        state.pending.push({ frame: state.frames, t: performance.now(), ...r.timings, top1: r.top[0].index });
        render(r, state.total.fps);
        postTimings();
      } catch (e) {
        state.running = false;
        showError(`inference failed: ${e.message || e}`);
        return;
      }
    }
    next(step);
  };
  next(step);
}

async function startCamera(deviceId) {
  const video = $('video');
  stopCamera(video);
  $('still').hidden = true;
  video.hidden = false;
  try {
    const cam = await openCamera(video, deviceId);
    $('camera-name').textContent = cam.label;
    const cams = await listCameras();
    const pick = $('camera-pick');
    pick.replaceChildren(...cams.map((c) => new Option(c.label, c.id, false, c.id === cam.deviceId)));
    pick.hidden = cams.length < 2;
  } catch (e) {
    $('camera-name').textContent = 'no camera';
    $('status').textContent = `camera unavailable (${e.message || e}); pick or drop a photo instead`;
    return;
  }
  state.running = true;
  $('toggle').textContent = 'Stop';
  document.body.dataset.state = 'camera';
  cameraLoop();
}

function stop() {
  state.running = false;
  stopCamera($('video'));
  $('toggle').textContent = 'Start';
  postTimings(true);
}

/** Still-image mode: a picked or dropped photo, classified once (deterministic; the camera is stopped). */
async function classifyFile(file) {
  stop();
  const bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const r = await classify(bitmap, bitmap.width, bitmap.height);
  const still = $('still');
  still.width = bitmap.width;
  still.height = bitmap.height;
  still.getContext('2d').drawImage(bitmap, 0, 0);
  still.hidden = false;
  $('video').hidden = true;
  state.last = { ...r, image: { name: file.name, width: bitmap.width, height: bitmap.height } };
  render(r, 0);
  $('status').textContent = `photo ${file.name} (${bitmap.width}x${bitmap.height})`;
  document.body.dataset.state = 'still';
  bitmap.close();
  return state.last;
}

function wireControls(backends) {
  $('toggle').onclick = () => (state.running ? stop() : startCamera($('camera-pick').value || undefined));
  $('camera-pick').onchange = (e) => startCamera(e.target.value);
  const sel = $('backend');
  sel.replaceChildren(...['wasm', 'webgpu'].map((b) => {
    const o = new Option(b === 'wasm' ? 'CPU (wasm)' : 'GPU (WebGPU)', b, false, b === state.engine.backend);
    o.disabled = !backends.includes(b);
    return o;
  }));
  sel.onchange = () => { params.set('backend', sel.value); location.search = params.toString(); };
  $('file').onchange = (e) => e.target.files[0] && classifyFile(e.target.files[0]);
  const drop = document.body;
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('dragging'); };
  drop.ondragleave = () => drop.classList.remove('dragging');
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove('dragging');
    if (e.dataTransfer.files[0]) classifyFile(e.dataTransfer.files[0]);
  };
}

async function main() {
  state.config = await loadConfig();
  state.manifest = await getJson('bundle/manifest.json');
  checkBundle(state.manifest);
  state.labels = state.manifest.labels
    ? (await (await fetch(`bundle/${state.manifest.labels}`)).text()).split('\n').filter((l) => l.trim())
    : null;
  const backends = await availableBackends();
  let backend = params.get('backend') || 'wasm';
  if (!backends.includes(backend)) backend = 'wasm';
  $('status').textContent = `loading ${state.manifest.model?.name} on ${backend}…`;
  state.engine = await Engine.create(`bundle/${state.manifest.file}`, state.manifest, backend);
  // first inference (kernel set-up, WebGPU shader compilation) timed apart from the frames, like `edge-sdk bench`
  const i = state.manifest.input;
  const shape = i.layout === 'NCHW' ? [1, 3, i.crop, i.crop] : [1, i.crop, i.crop, 3];
  const zeros = i.dtype === 'int8' ? new Int8Array(3 * i.crop * i.crop)
    : i.dtype === 'uint8' ? new Uint8Array(3 * i.crop * i.crop) : new Float32Array(3 * i.crop * i.crop);
  const t0 = performance.now();
  await state.engine.run(zeros, shape);
  state.firstMs = performance.now() - t0;
  state.device = await deviceInfo(backend);
  const m = state.manifest;
  $('model').textContent = `${m.model?.name} · ${m.target}/${m.backend} ${m.precision} · ${i.crop}x${i.crop} ${i.layout}`;
  $('budget').textContent = `${state.config.budget_ms} ms`;
  $('device').textContent = `${state.device.platform || ''} · ${navigator.userAgent}`;
  $('backend-used').textContent = backend + (state.engine.accelerated ? '' : ' (partly on wasm)') +
    (state.device.gpu ? ` · ${state.device.gpu}` : '');
  $('status').textContent = `ready: load ${fmt(state.engine.loadMs)} ms, first run ${fmt(state.firstMs, 2)} ms`;
  wireControls(backends);
  document.body.dataset.state = 'ready';
  window.addEventListener('pagehide', () => postTimings(true));
  if (params.get('camera') !== '0') await startCamera();
}

// A small handle for tests and the console: the last result, the stats, still-image classification.
window.edgeSdk = {
  state,
  classifyFile,
  ready: main().catch((e) => { showError(e.message || String(e)); throw e; }),
};
