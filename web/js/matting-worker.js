// The model, off the page's thread: one ONNX Runtime Web session, the recurrent states of each stream, and the
// conversions between 8-bit RGBA frames and the network's planar tensors.
//
// Messages in (each with an `id`; the reply carries the same id):
//   {type: 'init', modelUrl, precision, fixedRatio, backend: 'auto'|'wasm'|'webgpu', threads, profile, spin}
//       -> {backend, threads, precision, note}  (note: why WebGPU was passed over, or null)
//   {type: 'run', stream, frame: ImageBitmap, ratio, stateChannels}
//       -> {width, height, rgba: ArrayBuffer (fgr RGB + alpha, 8-bit), modelMs, frameMs, states?}
//   {type: 'reset', stream}          forget a stream's recurrent states (new video, new ratio or size)
//   {type: 'decode', frame: ImageBitmap} -> {width, height, rgba: ArrayBuffer} (the exact pixels the model sees)
// Errors come back as {error: message}.

const STATE_NAMES = ['r1', 'r2', 'r3', 'r4'];
const OUTPUT_NAMES = ['fgr', 'pha', 'r1o', 'r2o', 'r3o', 'r4o'];
const BYTE_TO_UNIT = Float32Array.from({length: 256}, (_, value) => value / 255); // 8-bit -> [0, 1], as numpy's /255
const MAX_THREADS = 8; // WASM threads: one a core, at most this many

let ort = null;
let session = null;
let precision = 'float32';
let fixedRatio = null;
const streams = new Map(); // stream name -> {width, height, ratio, states: [r1..r4] ort.Tensor}
const scratch = {canvas: null, context: null, planar: null}; // reused between frames of one size

async function pickBackend(requested) {
  if (requested === 'wasm') return 'wasm';
  const adapter = 'gpu' in navigator ? await navigator.gpu.requestAdapter().catch(() => null) : null;
  if (adapter) return 'webgpu';
  if (requested === 'webgpu') throw new Error('WebGPU was asked for but this browser offers no WebGPU adapter.');
  return 'wasm';
}

// WebGPU kernels differ between browsers and drivers (and have had bugs): before WebGPU is used, one synthetic
// frame is run on it and on WASM, and WebGPU is kept only when fgr and pha agree within these bounds.
const CHECK_FRAME = {width: 64, height: 48};
const CHECK_TOLERANCE = {float32: 2 / 255, float16: 8 / 255};

function sessionOptions(backend, {profile, spin}) {
  return {
    executionProviders: [backend],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    enableCpuMemArena: true,
    enableMemPattern: true,
    enableProfiling: Boolean(profile), // ONNX Runtime prints its per-operator trace to the console on 'profile'
    extra: spin === false ? {session: {intra_op: {allow_spinning: '0'}}} : {},
  };
}

async function checkOutputs(candidate) {
  // fgr and pha of the check frame (a fixed colour pattern, zero states) as float arrays.
  const {width, height} = CHECK_FRAME;
  const rgba = Uint8ClampedArray.from({length: 4 * width * height}, (_, i) => (i % 4 === 3 ? 255 : (i * 37 + (i >> 8) * 11) % 256));
  const feeds = modelInputs(sourceTensor(rgba, width, height), zeroStates(), fixedRatio ?? 0.5);
  const outputs = await candidate.run(feeds, ['fgr', 'pha']);
  return [floats(outputs.fgr), floats(outputs.pha)];
}

async function largestDifference(first, second) {
  const [a, b] = [await checkOutputs(first), await checkOutputs(second)];
  let largest = 0;
  a.forEach((values, k) => values.forEach((value, i) => (largest = Math.max(largest, Math.abs(value - b[k][i])))));
  return largest; // NaN when either side produced NaN
}

async function init({modelUrl, precision: modelPrecision, fixedRatio: ratio, backend: requested, threads, ...options}) {
  let backend = await pickBackend(requested || 'auto');
  // The WASM-only build is smaller and faster on the CPU; the WebGPU build carries its own WASM backend.
  ort = await import(backend === 'webgpu' ? '/ort/ort.webgpu.min.mjs' : '/ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = '/ort/';
  // One thread a core: more fight for the cores (3 or 4 threads on 2 cores ran at half the speed).
  const cores = Math.min(navigator.hardwareConcurrency || 1, MAX_THREADS);
  ort.env.wasm.numThreads = self.crossOriginIsolated ? threads || cores : 1;
  ort.env.wasm.simd = true;
  precision = modelPrecision;
  fixedRatio = ratio;
  const response = await fetch(modelUrl);
  if (!response.ok) throw new Error(`Could not download the model (${modelUrl}): HTTP ${response.status}`);
  const model = new Uint8Array(await response.arrayBuffer());
  session = await ort.InferenceSession.create(model.slice(), sessionOptions(backend, options));
  let note = null;
  if (backend === 'webgpu' && requested !== 'webgpu') {
    const reference = await ort.InferenceSession.create(model, sessionOptions('wasm', options));
    const difference = await largestDifference(session, reference);
    if (difference <= CHECK_TOLERANCE[precision]) {
      await reference.release();
    } else {
      await session.release();
      session = reference;
      backend = 'wasm';
      note = `WebGPU was available but its result on a check frame differed from WASM's by ${difference.toFixed(3)} (more than ${(255 * CHECK_TOLERANCE[precision]).toFixed(0)}/255), so the model runs on WASM.`;
    }
  }
  return {backend, threads: backend === 'wasm' ? ort.env.wasm.numThreads : 0, precision, note};
}

function zeroStates() {
  const type = precision === 'float16' ? 'float16' : 'float32';
  const data = () => (type === 'float16' ? new Uint16Array(1) : new Float32Array(1));
  return STATE_NAMES.map(() => new ort.Tensor(type, data(), [1, 1, 1, 1])); // broadcast by the graph
}

function framePixels(frame) {
  // RGBA bytes of an ImageBitmap, through a reused OffscreenCanvas (exact: opaque pixels, no colour conversion).
  const {width, height} = frame;
  if (!scratch.canvas || scratch.canvas.width !== width || scratch.canvas.height !== height) {
    scratch.canvas = new OffscreenCanvas(width, height);
    scratch.context = scratch.canvas.getContext('2d', {willReadFrequently: true, alpha: true});
  }
  scratch.context.clearRect(0, 0, width, height);
  scratch.context.drawImage(frame, 0, 0);
  frame.close();
  return scratch.context.getImageData(0, 0, width, height).data; // Uint8ClampedArray [H, W, 4]
}

function sourceTensor(rgba, width, height) {
  // [H, W, 4] bytes -> [1, 3, H, W] in [0, 1], into a buffer reused while the size stays the same.
  const plane = width * height;
  if (!scratch.planar || scratch.planar.length !== 3 * plane) scratch.planar = new Float32Array(3 * plane);
  const planar = scratch.planar;
  for (let i = 0, j = 0; i < plane; i += 1, j += 4) {
    planar[i] = BYTE_TO_UNIT[rgba[j]];
    planar[i + plane] = BYTE_TO_UNIT[rgba[j + 1]];
    planar[i + 2 * plane] = BYTE_TO_UNIT[rgba[j + 2]];
  }
  if (precision === 'float16') return new ort.Tensor('float16', new Float16Array(planar), [1, 3, height, width]);
  return new ort.Tensor('float32', planar, [1, 3, height, width]);
}

function modelInputs(src, states, ratio) {
  // The graph's inputs: src, r1i..r4i and, for graphs that read it at run time, downsample_ratio.
  const feeds = {src};
  STATE_NAMES.forEach((name, index) => (feeds[`${name}i`] = states[index]));
  if (fixedRatio === null) feeds.downsample_ratio = new ort.Tensor('float32', Float32Array.of(ratio), [1]);
  return feeds;
}

function floats(tensor) {
  // The values of a float32 or float16 tensor as an array of numbers (float16 raw bits are reinterpreted).
  const data = tensor.data;
  return data instanceof Uint16Array ? new Float16Array(data.buffer, data.byteOffset, data.length) : data;
}

function rgbaOutput(fgr, pha, width, height) {
  // fgr [1, 3, H, W] and pha [1, 1, H, W] in [0, 1] -> [H, W, 4] bytes; Uint8ClampedArray rounds half to even,
  // exactly like numpy's round(), so the alpha bytes equal Python's (pha * 255).round().
  const plane = width * height;
  const colour = floats(fgr);
  const alpha = floats(pha);
  const out = new Uint8ClampedArray(4 * plane);
  for (let i = 0, j = 0; i < plane; i += 1, j += 4) {
    out[j] = colour[i] * 255;
    out[j + 1] = colour[i + plane] * 255;
    out[j + 2] = colour[i + 2 * plane] * 255;
    out[j + 3] = alpha[i] * 255;
  }
  return out;
}

function stateImages(states, channels) {
  // A few channels of each recurrent state as grey images side by side (values in [-1, 1] -> 0..255).
  return states.map((tensor, index) => {
    const [, count, height, width] = tensor.dims;
    const shown = Math.min(channels, count);
    const values = floats(tensor);
    const pixels = new Uint8ClampedArray(4 * shown * width * height);
    for (let c = 0; c < shown; c += 1) {
      const channel = Math.round((c * count) / shown); // spread over the channels
      for (let y = 0; y < height; y += 1) {
        for (let x = 0; x < width; x += 1) {
          const grey = (values[(channel * height + y) * width + x] + 1) * 127.5;
          const k = 4 * (y * shown * width + c * width + x);
          pixels[k] = pixels[k + 1] = pixels[k + 2] = grey;
          pixels[k + 3] = 255;
        }
      }
    }
    return {name: STATE_NAMES[index], width: shown * width, height, pixels: pixels.buffer};
  });
}

async function run({stream, frame, ratio, stateChannels}) {
  const started = performance.now();
  const {width, height} = frame;
  if (fixedRatio !== null && Math.abs(ratio - fixedRatio) > 1e-9) {
    frame.close();
    throw new Error(`This model has the ratio ${fixedRatio} built in; ${ratio} needs a model with a run-time ratio.`);
  }
  let state = streams.get(stream);
  if (!state || state.width !== width || state.height !== height || state.ratio !== ratio) {
    state = {width, height, ratio, states: zeroStates()};
    streams.set(stream, state);
  }
  const feeds = modelInputs(sourceTensor(framePixels(frame), width, height), state.states, ratio);
  const modelStart = performance.now();
  const outputs = await session.run(feeds, OUTPUT_NAMES);
  const modelMs = performance.now() - modelStart;
  state.states.forEach((tensor) => tensor.dispose?.());
  state.states = OUTPUT_NAMES.slice(2).map((name) => outputs[name]);
  const rgba = rgbaOutput(outputs.fgr, outputs.pha, width, height);
  outputs.fgr.dispose?.();
  outputs.pha.dispose?.();
  const reply = {width, height, rgba: rgba.buffer, modelMs};
  if (stateChannels > 0) reply.states = stateImages(state.states, stateChannels);
  reply.frameMs = performance.now() - started;
  return reply;
}

const handlers = {
  init,
  run,
  reset: async ({stream}) => ({reset: streams.delete(stream)}),
  profile: async () => {
    session.endProfiling();
    return {profiled: true};
  },
  decode: async ({frame}) => {
    const {width, height} = frame;
    return {width, height, rgba: new Uint8ClampedArray(framePixels(frame)).buffer};
  },
};

async function handle(data) {
  try {
    const reply = await handlers[data.type](data);
    const transfer = [reply.rgba, ...(reply.states || []).map((state) => state.pixels)].filter(Boolean);
    self.postMessage({id: data.id, ...reply}, transfer);
  } catch (error) {
    self.postMessage({id: data.id, error: String(error?.message || error)});
  }
}

// One message at a time: a session runs one inference at a time, and a stream's states must not be raced.
let queue = Promise.resolve();
self.onmessage = ({data}) => {
  queue = queue.then(() => handle(data));
};
