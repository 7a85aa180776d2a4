// Runs the page's preprocessing in Node on raw RGBA images, for tests/test_web.py (no browser needed).
// Usage: node preprocess_cli.mjs JOB.json  ->  writes OUT.bin (float32 normalized HWC of each image, concatenated)
// JOB: {"spec": manifest.input, "images": [{"path": "x.rgba", "w": W, "h": H}], "out": "OUT.bin"}
import { readFileSync, writeFileSync } from 'node:fs';
import { preprocessRgba } from '../js/preprocess.js';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const parts = job.images.map(({ path, w, h }) => {
  const rgba = new Uint8Array(readFileSync(path));
  const { normalized, input } = preprocessRgba(rgba, w, h, job.spec);
  return [Buffer.from(normalized.buffer), Buffer.from(input.buffer, input.byteOffset, input.byteLength)];
});
writeFileSync(job.out, Buffer.concat(parts.map((p) => p[0])));
writeFileSync(job.out + '.model', Buffer.concat(parts.map((p) => p[1])));
