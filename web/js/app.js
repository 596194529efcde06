// The demo page: inputs (webcam, video file, image file), the live loop, composition, recurrent-state views,
// still and WebM export, the speed read-out, and `window.rvm` for scripts and tests.

import {Compositor} from './compositor.js';
import {MattingEngine} from './engine.js';
import {encodePng} from './png.js';

const LIVE = 'live';
const STATE_CHANNELS = 4;
const SPEED_WINDOW = 30; // frames over which frames/s and the median model time are taken
const FRAME_WAIT_MS = 100; // longest wait for a new video frame before taking the current one again
const AUTO_RATIO_SIDE = 512; // the library's default: min(512 / max(h, w), 1)

const $ = (id) => document.getElementById(id);
const engine = new MattingEngine();
const compositor = new Compositor($('output'));
const video = $('source');

const page = {
  config: null,
  source: null, // {kind: 'webcam' | 'video' | 'image', width, height, image?: ImageBitmap, stream?: MediaStream}
  running: false,
  generation: 0, // bumps on every new source, so that an old loop stops
  last: null, // the last result: {rgba, width, height}
  recorder: null,
  recordedFrames: 0, // frames drawn since the recording started
  times: [], // completion times of recent frames (ms)
  modelMs: [], // model time of every frame of this source (bounded)
  frameMs: [], // the worker's whole time per frame: pixels in, model, pixels out (bounded)
};

const stats = {frames: 0, fps: 0, modelMs: 0, frameMs: 0, width: 0, height: 0, ratio: 0, source: null, modelTimes: [], frameTimes: []};

// ----------------------------------------------------------------------------------------------- window.rvm

let readyResolve;
let readyReject;
const ready = new Promise((resolve, reject) => {
  readyResolve = resolve;
  readyReject = reject;
});
ready.catch(() => {}); // the page shows the reason; scripts that await rvm.ready get it too

let apiStreams = 0;

async function fetchBitmap(url) {
  // Decoded as stored: no colour-profile conversion, no premultiplication (what PIL's Image.open gives).
  const response = await fetch(url);
  if (!response.ok) throw new Error(`Could not load ${url}: HTTP ${response.status}`);
  return createImageBitmap(await response.blob(), {premultiplyAlpha: 'none', colorSpaceConversion: 'none'});
}

window.rvm = {
  ready,
  backend: null, // 'webgpu' or 'wasm' once the model is loaded
  threads: 0,
  precision: null,
  model: null,
  stats,
  /** ONNX Runtime's per-operator profile of the runs so far, printed to the console (page opened with ?profile). */
  endProfiling: () => engine.endProfiling(),

  /** Matte the image at `url` `frames` times with the states carried; the alpha of the last run, 8-bit. */
  async matteImage(url, {ratio = null, frames = 1} = {}) {
    await ready;
    if (!Number.isInteger(frames) || frames < 1) throw new Error(`frames must be a whole number ≥ 1; got ${frames}.`);
    const image = await fetchBitmap(url);
    const used = ratio ?? page.config.model.fixed_ratio ?? autoRatio(image.width, image.height);
    if (!(used > 0 && used <= 1)) throw new Error(`ratio must be in (0, 1]; got ${ratio}.`);
    const stream = `api-${apiStreams++}`;
    let result;
    try {
      for (let i = 0; i < frames; i += 1) result = await engine.run(stream, await createImageBitmap(image), used);
    } finally {
      image.close();
      await engine.reset(stream);
    }
    const rgba = new Uint8Array(result.rgba);
    const alpha = new Uint8Array(result.width * result.height);
    for (let i = 0; i < alpha.length; i += 1) alpha[i] = rgba[4 * i + 3];
    return {width: result.width, height: result.height, alpha};
  },

  /** The RGB bytes the model receives for the image at `url`: {width, height, rgb} (row-major, 3 bytes a pixel). */
  async decodeImage(url) {
    const {width, height, rgba} = await engine.decode(await fetchBitmap(url));
    const bytes = new Uint8Array(rgba);
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) rgb.set(bytes.subarray(i, i + 3), j);
    return {width, height, rgb};
  },
};

// ----------------------------------------------------------------------------------------------- set-up

function showMessage(text, command) {
  $('message-text').textContent = text;
  $('message-command').textContent = command || '';
  $('message-command').hidden = !command;
  $('message').hidden = false;
}

function showNotice(text) {
  $('notice').textContent = text;
  $('notice').hidden = false;
}

function autoRatio(width, height) {
  return Math.min(AUTO_RATIO_SIDE / Math.max(width, height), 1);
}

async function start() {
  let config;
  try {
    const response = await fetch('/config.json');
    config = await response.json();
  } catch (error) {
    config = {model: null, error: `The page could not reach its server (${error.message}).`, command: 'python web/serve.py'};
  }
  page.config = config;
  if (!config.model) {
    showMessage(config.error, config.command);
    $('backend').textContent = 'no model';
    readyReject(new Error(`${config.error} ${config.command || ''}`.trim()));
    return;
  }
  const model = config.model;
  $('model-name').textContent = `${model.name} · ${model.precision} · ${model.fixed_ratio === null ? 'any ratio' : `ratio ${model.fixed_ratio}`}`;
  if (model.fixed_ratio !== null) {
    const select = $('ratio');
    select.innerHTML = `<option value="${model.fixed_ratio}">${model.fixed_ratio} (built into the model)</option>`;
    select.disabled = true;
  }
  const query = new URLSearchParams(location.search);
  try {
    const info = await engine.init({
      modelUrl: '/model.onnx',
      precision: model.precision,
      fixedRatio: model.fixed_ratio,
      backend: query.get('backend') || 'auto',
      threads: Number(query.get('threads')) || 0,
      profile: query.has('profile'),
      spin: query.get('spin') !== '0',
    });
    Object.assign(window.rvm, {backend: info.backend, threads: info.threads, precision: info.precision, model: model.name});
    $('backend').textContent =
      info.backend === 'webgpu' ? 'WebGPU' : `WASM · ${info.threads} thread${info.threads === 1 ? '' : 's'}${crossOriginIsolated ? '' : ' (page not cross-origin isolated)'}`;
    if (info.note) showNotice(info.note);
    for (const id of ['webcam', 'video-file', 'image-file']) $(id).disabled = false;
    readyResolve(info);
  } catch (error) {
    showMessage(`The model could not be loaded: ${error.message}`, null);
    $('backend').textContent = 'failed';
    readyReject(error);
  }
}

// ----------------------------------------------------------------------------------------------- inputs

async function useSource(source) {
  // The caller has stopped the previous source (stopSource) before opening this one.
  page.source = source;
  page.generation += 1;
  page.times = [];
  page.modelMs = [];
  page.frameMs = [];
  Object.assign(stats, {frames: 0, fps: 0, modelMs: 0, frameMs: 0, source: source.kind, modelTimes: page.modelMs, frameTimes: page.frameMs});
  await engine.reset(LIVE);
  for (const id of ['stop', 'save', 'record']) $(id).disabled = false;
  page.running = true;
  loop(page.generation);
}

function stopSource() {
  page.running = false;
  page.generation += 1; // a frame still in the worker is dropped: the last result shown stays the last counted
  if (page.recorder) page.recorder.stop();
  if (page.source?.stream) page.source.stream.getTracks().forEach((track) => track.stop());
  if (page.source?.image) page.source.image.close();
  if (page.source?.kind !== 'image') {
    video.pause();
    video.srcObject = null;
    video.removeAttribute('src');
  }
  page.source = null;
  $('stop').disabled = true;
  $('record').disabled = true;
}

async function playVideo(kind, setup) {
  setup();
  video.hidden = false;
  await video.play();
  if (!video.videoWidth) await new Promise((resolve) => video.addEventListener('loadedmetadata', resolve, {once: true}));
  return {kind, width: video.videoWidth, height: video.videoHeight};
}

$('webcam').onclick = async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({video: {width: {ideal: 640}, height: {ideal: 480}}, audio: false});
    stopSource();
    const source = await playVideo('webcam', () => {
      video.srcObject = stream;
    });
    await useSource({...source, stream});
  } catch (error) {
    showMessage(`The webcam could not be opened: ${error.message}`, null);
  }
};

$('video-file').onchange = async ({target}) => {
  const file = target.files[0];
  if (!file) return;
  stopSource();
  const source = await playVideo('video', () => {
    video.loop = true;
    video.src = URL.createObjectURL(file);
  });
  await useSource(source);
};

$('image-file').onchange = async ({target}) => {
  const file = target.files[0];
  if (!file) return;
  stopSource();
  video.hidden = true;
  const image = await createImageBitmap(file, {premultiplyAlpha: 'none', colorSpaceConversion: 'none'});
  await useSource({kind: 'image', width: image.width, height: image.height, image});
};

$('stop').onclick = () => stopSource();

// ----------------------------------------------------------------------------------------------- the loop

function processingSize(width, height) {
  const longSide = Number($('resolution').value);
  const scale = longSide > 0 ? Math.min(longSide / Math.max(width, height), 1) : 1;
  return [Math.max(16, Math.round(width * scale)), Math.max(16, Math.round(height * scale))];
}

function currentRatio(width, height) {
  const value = $('ratio').value;
  return value === 'auto' ? autoRatio(width, height) : Number(value);
}

const videoFrames = {presented: 0, grabbed: -1, waiters: []}; // frame counters of the <video>

function watchVideoFrames() {
  video.requestVideoFrameCallback((now, metadata) => {
    videoFrames.presented = metadata.presentedFrames;
    videoFrames.waiters.splice(0).forEach((resolve) => resolve());
    watchVideoFrames();
  });
}

async function nextVideoFrame() {
  // Wait only when the frame on show was processed already (at most FRAME_WAIT_MS: a paused video repeats).
  if (videoFrames.presented === videoFrames.grabbed) {
    await new Promise((resolve) => {
      videoFrames.waiters.push(resolve);
      setTimeout(resolve, FRAME_WAIT_MS);
    });
  }
  videoFrames.grabbed = videoFrames.presented;
}

async function grabFrame(width, height) {
  const source = page.source;
  const element = source.kind === 'image' ? source.image : video;
  if (source.kind !== 'image') await nextVideoFrame();
  const [sourceWidth, sourceHeight] = source.kind === 'image' ? [source.width, source.height] : [video.videoWidth, video.videoHeight];
  if (sourceWidth === width && sourceHeight === height) return createImageBitmap(element);
  return createImageBitmap(element, {resizeWidth: width, resizeHeight: height, resizeQuality: 'medium'});
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
}

function updateStats(result, ratio) {
  const now = performance.now();
  page.times.push(now);
  if (page.times.length > SPEED_WINDOW) page.times.shift();
  for (const [list, value] of [[page.modelMs, result.modelMs], [page.frameMs, result.frameMs]]) {
    list.push(value);
    if (list.length > 10000) list.shift();
  }
  const span = page.times[page.times.length - 1] - page.times[0];
  Object.assign(stats, {
    frames: stats.frames + 1,
    fps: page.times.length > 1 ? ((page.times.length - 1) * 1000) / span : 0,
    modelMs: median(page.modelMs.slice(-SPEED_WINDOW)),
    frameMs: result.frameMs,
    width: result.width,
    height: result.height,
    ratio,
  });
  $('stats').textContent =
    `${stats.fps.toFixed(1)} frames/s · model ${stats.modelMs.toFixed(0)} ms a frame (median of ${Math.min(page.modelMs.length, SPEED_WINDOW)})` +
    ` · ${stats.width}×${stats.height} at ratio ${ratio} · ${window.rvm.backend === 'webgpu' ? 'WebGPU' : `WASM ${window.rvm.threads}T`}`;
}

function drawStates(states) {
  for (const state of states || []) {
    const canvas = $(`state-${state.name}`);
    if (canvas.width !== state.width || canvas.height !== state.height) {
      canvas.width = state.width;
      canvas.height = state.height;
    }
    canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(state.pixels), state.width, state.height), 0, 0);
  }
}

async function loop(generation) {
  while (page.running && page.generation === generation) {
    const source = page.source;
    const [width, height] = processingSize(source.width, source.height);
    const ratio = currentRatio(width, height);
    try {
      const frame = await grabFrame(width, height);
      compositor.keepInput(frame);
      const result = await engine.run(LIVE, frame, ratio, $('show-states').checked ? STATE_CHANNELS : 0);
      if (page.generation !== generation) return;
      page.last = result;
      compositor.draw(result.rgba, result.width, result.height);
      if (page.recorder) page.recordedFrames += 1;
      drawStates(result.states);
      updateStats(result, ratio);
    } catch (error) {
      if (page.generation !== generation) return; // the source was stopped or replaced meanwhile
      showMessage(`Matting stopped: ${error.message}`, null);
      stopSource();
      return;
    }
  }
}

// ----------------------------------------------------------------------------------------------- outputs

function download(blob, name) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

$('save').onclick = async () => {
  if (!page.last) return;
  const {rgba, width, height} = page.last;
  download(await encodePng(new Uint8Array(rgba), width, height), 'rvm-foreground.png');
};

$('record').onclick = () => {
  if (page.recorder) {
    page.recorder.stop();
    return;
  }
  const type = ['video/webm;codecs=vp9', 'video/webm;codecs=vp8', 'video/webm'].find((t) => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder($('output').captureStream(), {mimeType: type});
  const chunks = [];
  recorder.ondataavailable = ({data}) => data.size && chunks.push(data);
  recorder.onstop = () => {
    if (page.recordedFrames > 0) download(new Blob(chunks, {type: 'video/webm'}), 'rvm-composition.webm');
    else showNotice('Nothing was recorded: no frame was matted while recording.');
    page.recorder = null;
    $('record').textContent = 'Record WebM';
  };
  recorder.start(250);
  page.recorder = recorder;
  page.recordedFrames = 0;
  $('record').textContent = 'Stop recording';
};

// ----------------------------------------------------------------------------------------------- controls

$('background').onchange = ({target}) => {
  compositor.mode = target.value;
  $('background-image-label').hidden = target.value !== 'image';
  $('background-colour').hidden = target.value !== 'colour';
  $('stage').classList.toggle('checker', target.value === 'transparent');
};
$('background-colour').oninput = ({target}) => {
  compositor.colour = target.value;
};
$('background-image').onchange = async ({target}) => {
  if (target.files[0]) compositor.image = await createImageBitmap(target.files[0]);
};
$('show-states').onchange = ({target}) => {
  $('states').hidden = !target.checked;
};

watchVideoFrames();
start();
