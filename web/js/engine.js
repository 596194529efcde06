// The page's side of the matting worker: promise-based requests, one message per request, buffers transferred.

export class MattingEngine {
  constructor() {
    this.worker = new Worker(new URL('./matting-worker.js', import.meta.url), {type: 'module'});
    this.pending = new Map(); // id -> {resolve, reject}
    this.nextId = 1;
    this.worker.onmessage = ({data: {id, error, ...reply}}) => {
      const request = this.pending.get(id);
      this.pending.delete(id);
      if (error) request.reject(new Error(error));
      else request.resolve(reply);
    };
    this.worker.onerror = (event) => {
      const error = new Error(`The matting worker failed: ${event.message || 'unknown error'}`);
      this.pending.forEach(({reject}) => reject(error));
      this.pending.clear();
    };
  }

  request(type, fields = {}, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, {resolve, reject});
      this.worker.postMessage({id, type, ...fields}, transfer);
    });
  }

  /** Load the model; resolves to {backend, threads, precision}. */
  init({modelUrl, precision, fixedRatio, backend = 'auto', threads = 0, profile = false, spin = true}) {
    return this.request('init', {modelUrl, precision, fixedRatio, backend, threads, profile, spin});
  }

  /** One frame (an ImageBitmap, handed over) of `stream`, its states carried from that stream's previous frame. */
  run(stream, frame, ratio, stateChannels = 0) {
    return this.request('run', {stream, frame, ratio, stateChannels}, [frame]);
  }

  /** Print ONNX Runtime's per-operator profile to the console (sessions started with `profile: true`). */
  endProfiling() {
    return this.request('profile');
  }

  /** Forget the recurrent states of `stream`. */
  reset(stream) {
    return this.request('reset', {stream});
  }

  /** The RGBA bytes of `frame` exactly as the model receives them. */
  decode(frame) {
    return this.request('decode', {frame}, [frame]);
  }
}
