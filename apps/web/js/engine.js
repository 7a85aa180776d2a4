// LiteRT.js engine: loads the bundle's .tflite on wasm (XNNPACK) or WebGPU and runs one preprocessed frame.
import { loadLiteRt, loadAndCompile, Tensor } from '@litertjs/core';
import { fromModelOutput } from './preprocess.js';

const WASM_DIR = new URL('../vendor/litertjs/core/wasm/', import.meta.url).href;

/** Which accelerators this browser offers ('wasm' always; 'webgpu' when navigator.gpu gives an adapter). */
export async function availableBackends() {
  const out = ['wasm'];
  try {
    if (navigator.gpu && (await navigator.gpu.requestAdapter())) out.push('webgpu');
  } catch { /* no adapter: wasm only */ }
  return out;
}

/** What the page reports as "the device": the browser's user agent plus the WebGPU adapter when used. */
export async function deviceInfo(backend) {
  const info = {
    user_agent: navigator.userAgent,
    platform: navigator.userAgentData?.platform || navigator.platform || null,
    mobile: navigator.userAgentData?.mobile ?? /Mobi|Android|iPhone|iPad/.test(navigator.userAgent),
    cores: navigator.hardwareConcurrency || null,
    backend,
    gpu: null,
  };
  if (backend === 'webgpu' && navigator.gpu) {
    try {
      const a = await navigator.gpu.requestAdapter();
      const i = a && (a.info || (a.requestAdapterInfo && await a.requestAdapterInfo()));
      if (i) info.gpu = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ') || null;
    } catch { /* adapter info is optional */ }
  }
  return info;
}

export class Engine {
  /** Load LiteRT.js and compile the model; `backend` is 'wasm' or 'webgpu' (falls back to wasm, reported). */
  static async create(modelUrl, manifest, backend) {
    const t0 = performance.now();
    // JSPI lets LiteRT.js run ops WebGPU cannot take on wasm (model partitioning); only load it when asked.
    const jspi = backend === 'webgpu' && 'Suspending' in WebAssembly;
    await loadLiteRt(WASM_DIR, jspi ? { jspi: true } : undefined);
    const model = await loadAndCompile(modelUrl, { accelerator: backend });
    const e = new Engine(model, manifest, backend);
    e.loadMs = performance.now() - t0;
    e.accelerated = backend === 'wasm' || model.isFullyAccelerated !== false;
    return e;
  }

  constructor(model, manifest, backend) {
    this.model = model;
    this.input = manifest.input;
    this.output = manifest.output;
    this.backend = backend;
  }

  /** One inference: typed array in the model's layout/dtype -> float32 logits; includes the output read-back. */
  async run(input, shape) {
    const t = new Tensor(input, shape);
    let outs;
    try {
      outs = await this.model.run(t);
      const first = Array.isArray(outs) ? outs[0] : Object.values(outs)[0];
      const raw = await first.data();
      return fromModelOutput(raw, this.output);
    } finally {
      t.delete();
      if (outs) for (const o of (Array.isArray(outs) ? outs : Object.values(outs))) o.delete();
    }
  }
}
